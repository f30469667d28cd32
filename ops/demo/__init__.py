"""The closed-loop demo: task, agents, users, loop and report."""

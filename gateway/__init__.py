"""The HTTP front door: every client that is not the Python SDK comes in here."""

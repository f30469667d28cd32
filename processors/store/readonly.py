"""Which statements count as reads: the guard of the read-only interfaces.

The engine's ``readonly`` setting alone is not enough on chdb: with it a connection
still runs ``INSERT INTO FUNCTION file(...)``, ``CREATE TEMPORARY TABLE``, ``KILL
QUERY`` and table functions that read local files or reach the network. So a statement
is a read only when

* it is one statement (no ``;`` followed by another),
* its leading keyword is one of :data:`~agentgym.processors.store.sqltext.READ_KEYWORDS`
  (``SELECT``, ``WITH``, ``SHOW``, ``DESCRIBE``, ``EXISTS``, ``EXPLAIN``, ``SET``, ``USE``),
* it has no ``INTO OUTFILE`` / ``FROM INFILE``, and
* it calls none of the functions in :data:`EXTERNAL_FUNCTIONS` (table functions that
  touch files, processes, Python objects or other servers, and the scalar ``file()``).

Anything else is refused with ClickHouse's READONLY error (code 164).
"""

from __future__ import annotations

from dataclasses import dataclass

from agentgym.processors.store.exceptions import QueryError, ReadOnlyError
from agentgym.processors.store.sqltext import RESULT_KEYWORDS, READ_KEYWORDS, FormatTracker, Token, iter_tokens

__all__ = ["ReadStatement", "check_readonly", "EXTERNAL_FUNCTIONS", "SAFE_TABLE_FUNCTIONS", "readonly_error_text"]

# Table functions of ClickHouse 26.9 that reach outside the database (files, URLs,
# object stores, other servers, processes, the host's Python objects), plus the
# scalar file(). Lower case. tests check that every table function the engine knows
# is either here or in SAFE_TABLE_FUNCTIONS, so an engine upgrade forces a decision.
EXTERNAL_FUNCTIONS = frozenset(
    name.lower()
    for name in (
        "arrowstream", "azureBlobStorage", "azureBlobStorageCluster", "bigquery", "cluster",
        "clusterAllReplicas", "cosn", "deltaLake", "deltaLakeAzure", "deltaLakeAzureCluster",
        "deltaLakeCluster", "deltaLakeLocal", "deltaLakeS3", "deltaLakeS3Cluster", "eval", "executable",
        "file", "fileCluster", "filesystem", "gcs", "hdfs", "hdfsCluster", "hudi", "hudiCluster",
        "iceberg", "icebergAzure", "icebergAzureCluster", "icebergCluster", "icebergHDFS",
        "icebergHDFSCluster", "icebergLocal", "icebergLocalCluster", "icebergS3", "icebergS3Cluster",
        "input", "jdbc", "mongodb", "mysql", "odbc", "oss", "paimon", "paimonAzure", "paimonAzureCluster",
        "paimonCluster", "paimonHDFS", "paimonHDFSCluster", "paimonLocal", "paimonS3", "paimonS3Cluster",
        "postgresql", "prometheusQuery", "prometheusQueryRange", "python", "redis", "remote",
        "remoteSecure", "s3", "s3Cluster", "sqlite", "url", "urlCluster", "ytsaurus",
    )
)

# Table functions that only compute or read this database's own tables.
SAFE_TABLE_FUNCTIONS = frozenset(
    name.lower()
    for name in (
        "SQLStandardValues", "dictionary", "format", "fuzzJSON", "fuzzQuery", "generateRandom",
        "generateSeries", "generate_series", "loop", "merge", "mergeTreeAnalyzeIndexes",
        "mergeTreeAnalyzeIndexesUUID", "mergeTreeCodecBlockCounts", "mergeTreeIndex",
        "mergeTreeProjection", "mergeTreeTextIndex", "null", "numbers", "numbers_mt", "primes",
        "timeSeriesData", "timeSeriesMetricFamilies", "timeSeriesMetrics", "timeSeriesSamples",
        "timeSeriesSelector", "timeSeriesTags", "values", "view", "viewExplain", "viewIfPermitted",
        "zeros", "zeros_mt",
    )
)


@dataclass(frozen=True)
class ReadStatement:
    """What the guard learned about an accepted statement.

    Attributes:
        keyword: the leading keyword, upper case (``SELECT``).
        output_format: the format named by a trailing ``FORMAT`` clause, if any.
        returns_result: whether the statement answers with a result set (``SET``/``USE`` do not).
    """

    keyword: str
    output_format: str | None
    returns_result: bool


def readonly_error_text(what: str) -> str:
    """The refusal message, worded like ClickHouse's own READONLY error."""
    return (
        f"Code: 164. DB::Exception: {what} is refused: this interface is read-only "
        "(only SELECT, WITH, SHOW, DESCRIBE, EXISTS, EXPLAIN, SET and USE are allowed; "
        "writes go through the Agent Gym sink). (READONLY)"
    )


def check_readonly(sql: str) -> ReadStatement:
    """Accepts a statement that only reads; refuses anything else.

    Args:
        sql: one statement (a trailing ``;`` is allowed).

    Returns:
        What the statement is (keyword, trailing FORMAT, whether it returns rows).

    Raises:
        ReadOnlyError: for a write, DDL, or a statement reaching outside the database.
        QueryError: code 62 (SYNTAX_ERROR) for an empty query or several statements.
    """
    # One pass over the tokens in constant memory (a request body of ``((((`` is a
    # token per character); the errors keep their order of precedence: empty, then
    # several statements, then the keyword, then the first forbidden construct.
    count = 0
    keyword: str | None = None
    prev: Token | None = None
    after_semicolon = False
    multi = False
    forbidden: str | None = None
    fmt = FormatTracker()
    for tok in iter_tokens(sql):
        count += 1
        if tok.kind == "punct" and tok.value == ";":
            after_semicolon = True
            continue
        if after_semicolon:
            multi = True
            break
        if keyword is None and not (tok.kind == "punct" and tok.value == "("):
            keyword = tok.upper if tok.kind == "word" else tok.value
        if forbidden is None and prev is not None and prev.kind in ("word", "quoted"):
            if prev.value.lower() in EXTERNAL_FUNCTIONS and tok.kind == "punct" and tok.value == "(":
                forbidden = f"the function {prev.value}() (it reaches outside the database)"
            elif prev.kind == "word" and tok.kind == "word" and (prev.upper, tok.upper) in (("INTO", "OUTFILE"), ("FROM", "INFILE")):
                forbidden = f"{prev.upper} {tok.upper}"
        fmt.feed(tok)
        prev = tok
    if not count:
        raise QueryError("Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)", code=62, name="SYNTAX_ERROR")
    if multi:
        raise QueryError(
            "Code: 62. DB::Exception: Multi-statements are not allowed: send one statement per request. (SYNTAX_ERROR)",
            code=62,
            name="SYNTAX_ERROR",
        )
    keyword = keyword or ""
    if keyword not in READ_KEYWORDS:
        raise ReadOnlyError(readonly_error_text(f"{keyword or 'this statement'}"))
    if forbidden is not None:
        raise ReadOnlyError(readonly_error_text(forbidden))
    return ReadStatement(keyword, fmt.result(), keyword in RESULT_KEYWORDS)

"""Dialects, passes, lowerings and backends; works on IR alone."""

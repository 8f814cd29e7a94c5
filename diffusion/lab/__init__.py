"""The lab store and what it holds: bytes under one URI, model cards and weights, typed tables, data sets, pictures."""

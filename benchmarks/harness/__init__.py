"""Benchmark harness comparing dayfly with functions-framework and bare uvicorn."""

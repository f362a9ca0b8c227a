"""Helpers for tests and benchmarks: an independent reader and writers of delete files.

Nothing here is needed at run time; it is shipped so that users can verify their own tables the
same way the project's tests do.
"""

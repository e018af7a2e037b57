"""Loads the llamacert conformance plugin for `pytest conformance ...`."""

from conformance.plugin import (  # noqa: F401  (pytest finds hooks and fixtures by name)
    client,
    pytest_addoption,
    pytest_collection_finish,
    pytest_configure,
    pytest_generate_tests,
    pytest_runtest_makereport,
    pytest_sessionfinish,
    suite,
    verify,
)

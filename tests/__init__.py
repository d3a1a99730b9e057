"""The test suite: unit tests by subpackage, end-to-end runs in integration/."""

"""The `crlc` command line."""

"""The `crlc` command line.

`main` builds the parser and runs a command; each command module adds its subcommands
(`train`, `library`, `evaluation`, `results`, `corrections`, `export`) on top of the shared
`arguments`, `output`, `paths`, `scan_options`, `train_options` and `signals`. The engine is
reached through `crlc_engine.api` only, and importing any of these loads no torch.
"""

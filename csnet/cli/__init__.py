"""The ``csnet`` command line: one small module per command, listed in :mod:`csnet.cli.main`."""

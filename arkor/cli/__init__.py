"""The ``arkor`` command line: thin commands over the config, build and scaffold rooms."""

"""The ``resnet`` command: each sub-command module parses its arguments and calls the library."""

"""The one exception type users see: its message is a complete, one-line explanation."""


class ResNetError(Exception):
    """A problem with the user's input (file, key, shape, flag) or environment.

    The command line prints ``resnet: error: <message>`` and exits with status 2, no traceback;
    so the message must name what is wrong and, where it helps, what to do about it.
    """

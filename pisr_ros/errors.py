"""Exceptions shared by the library and its command line."""


class UsageError(Exception):
    """A bad file, argument or parameter. The command line prints it as one line and exits 2;
    the message says what is wrong and, where it can, what to do about it."""

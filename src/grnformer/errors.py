"""The two exceptions a user sees: bad input, and a resource we could not get."""


class InputError(ValueError):
    """The user's input (file, matrix, gene names, options) cannot be used as given.

    Raised before any output is written; the CLI prints the message and exits with code 2.
    """


class ResourceError(RuntimeError):
    """A data resource (gene table, ground truth, dataset) could not be fetched or found.

    The message names the resource and how to supply it by hand.
    """

"""DataError: bad input data, raised by every reader (medchat.data.readers, .sharegpt, .preference, ...)."""


class DataError(ValueError):
    """Bad input data; the message names the file, column or row."""

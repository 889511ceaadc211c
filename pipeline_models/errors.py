"""Exceptions that mark a bad request rather than a broken model."""


class InvalidInputError(ValueError):
    """The request's input is malformed (e.g. an undecodable image); only that request fails."""

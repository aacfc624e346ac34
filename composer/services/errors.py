"""What the services answer when a request cannot be carried out as asked."""


class OperationRefused(Exception):
    """The request cannot be carried out as asked; the message says why, for the user."""

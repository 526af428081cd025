"""The ``trestle`` command line."""

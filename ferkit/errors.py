"""The toolkit's exceptions: one base class, so that a program using the API catches ours alone.

  FerkitError       anything the toolkit refuses: a bad file, folder, model or setting; the message
                    names the input and says what is wrong (and, from the scripts, what to do)
  PhotoError, TooLarge (ferkit.photos), VideoError (ferkit.video), DataError (ferkit.data) and the
  command-line layer's UserError (ferkit.cli) are all FerkitErrors.
"""


class FerkitError(Exception):
    """An input the toolkit cannot use; str(error) is one line naming it."""

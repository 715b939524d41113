"""What the desk's CSV files hold, cell by cell: the one place a cell is made
safe for the spreadsheet the author opens it in."""

from ..imports import FORMULA_STARTS, quoted_as_text

# A file's first character, which tells Excel the file is UTF-8: without it,
# Excel reads it in the machine's code page ("Zoë" shows as "ZoÃ«"). The
# import takes it off again.
BYTE_ORDER_MARK = "\ufeff"


def csv_cell(value) -> str:
    """The value as text a spreadsheet shows as it is: one that starts like a
    formula (a name or title typed in the desk, an imported field) is quoted.
    So is one that starts as a quoted one does ("'-x"): the import takes an
    apostrophe off every cell that does."""
    text = "" if value is None else str(value)
    quote = text[:1] in FORMULA_STARTS or quoted_as_text(text)
    return "'" + text if quote else text

"""What the desk's CSV files hold, cell by cell: the one place a cell is made
safe for the spreadsheet the author opens it in."""

from ..imports import FORMULA_STARTS

# A file's first character, which tells Excel the file is UTF-8: without it,
# Excel reads it in the machine's code page ("Zoë" shows as "ZoÃ«"). The
# import takes it off again.
BYTE_ORDER_MARK = "\ufeff"


def csv_cell(value) -> str:
    """The value as text a spreadsheet shows as it is: one that starts like a
    formula (a name or title typed in the desk, an imported field) is quoted."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in FORMULA_STARTS else text

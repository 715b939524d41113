"""What the desk's CSV files hold, cell by cell: the one place a cell is made
safe for the spreadsheet the author opens it in."""

from ..imports import FORMULA_STARTS


def csv_cell(value) -> str:
    """The value as text a spreadsheet shows as it is: one that starts like a
    formula (a name or title typed in the desk, an imported field) is quoted."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in FORMULA_STARTS else text

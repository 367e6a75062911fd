"""Questions about the asker's own records, which no union document holds.

"How many sick days do I have left?", "has my card been processed yet?", "how much have I paid in
dues this year?": every word is on topic, so the closest sentence (the sick-leave accrual clause)
scored as an answer, to a question about one member's balance. The documents say how records are
kept, never what one member's record says. Such a question is refused, with the closest passages
and the union contact beside the refusal, as for a name the documents never mention (names.py).

The patterns ask for the first person *and* a record (a count so far or left, a form processed,
a ballot counted). Measured on the written questions (docs/reader.md): 45 of 126 own-records
questions of the train split and 8 of 53 of the dev split caught, and none of the 2,263
answerable questions of either, nor any of the 221 of the four eval sets.
"""
from __future__ import annotations

import re

_OWN_RECORDS = re.compile(r"""
  # "have I logged ... so far", "have I been paid yet"
    \bhave\s+i\s+(been\s+)?\w+(ed|en)\b.*\b(yet|so\s+far|already)\b
  # "was my ballot counted", "did my Form E application go through", "is my card processed"
  | \b(did|was|were|is|has)\s+my\s+[\w' -]{1,40}?\b(counted|processed|approved|received|filed|signed|submitted
        |accepted|go(ne)?\s+through|charged|wrong)\b
  # "did I get the extension email"
  | \b(did|do)\s+i\s+(get|receive)\b.*\b(email|letter|yet|already)\b
  # "how many hours have I worked this semester", "how much sick leave have I used"
  | \bhow\s+(many|much)\b[^?]*\b(have\s+i|i('ve|\s+have)|did\s+i|am\s+i)\b[^?]*\b(so\s+far|left|used|taken|logged
        |worked|picketed|paid|earned|banked|accrued|owe|charged|sitting)\b
  # "how many sick days do I have left / saved up"
  | \bhow\s+(many|much)\b[^?]*\b(do\s+i\s+have|i\s+have)\s+(left|remaining|banked|saved|sitting)\b
  | \bam\s+i\s+(already\s+)?(on\s+the\s+list|in\s+good\s+standing|behind|over\s+the\s+cap|a\s+member\s+in\s+good)\b
  | \bis\s+my\s+name\s+on\b
  | \b(what('s|\s+is)|how\s+much\s+is)\s+(in\s+)?my\s+(current\s+)?(balance|bank|account)\b
""", re.I | re.X)


def asks_own_records(question: str) -> bool:
    """Whether the question asks what the asker's own record says (a balance, hours so far, a
    form's or ballot's status), which only the employer's or the union's records hold."""
    return bool(_OWN_RECORDS.search(question))

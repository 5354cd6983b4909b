"""`--study S`: a study by its id or its name, the same way in every command."""
from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from shared.errors import OrchError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.store.report_reads import StudyRecord


def study_for(session: Session, ref: str) -> StudyRecord:
    """The study whose id or name is `ref`, or a one-line error listing the studies there are."""
    from shared.store.report_reads import resolve_study, study_names

    record = resolve_study(session, ref)
    if record is None:
        every = study_names(session)
        # names like it first (NORMS for norms, a typo): the last ten alone left out the one meant
        close = difflib.get_close_matches(ref.strip().lower(), [str(name).lower() for _, name in every if name],
                                          n=3, cutoff=0.6)
        alike = [(i, name) for i, name in every if name and name.lower() in close]
        if alike:
            meant = ", ".join(f"{i} ({name})" for i, name in alike)
            raise OrchError(f"--study: no study with id or name {ref!r}; did you mean {meant}?")
        listing = ", ".join(f"{i} ({name})" if name else str(i) for i, name in every[-10:]) or "none yet"
        which = f"the last 10 of {len(every)} studies" if len(every) > 10 else "studies"
        raise OrchError(f"--study: no study with id or name {ref!r}; {which}: {listing}")
    return record

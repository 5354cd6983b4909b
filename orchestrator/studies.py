"""`--study S`: a study by its id or its name, the same way in every command."""
from __future__ import annotations

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
        listing = ", ".join(f"{i} ({name})" if name else str(i) for i, name in every[-10:]) or "none yet"
        which = f"the last 10 of {len(every)} studies" if len(every) > 10 else "studies"
        raise OrchError(f"--study: no study with id or name {ref!r}; {which}: {listing}")
    return record

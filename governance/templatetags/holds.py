from __future__ import annotations

from django import template

from governance.models import LegalHold
from governance.selectors.expiry import holds_on as _holds_on

register = template.Library()


@register.simple_tag
def holds_on(target_type: str, target_id: int) -> list[LegalHold]:
    """Active legal holds placed on this very object."""
    return _holds_on(target_type, int(target_id))

"""The "launch | binder" badge (same geometry and colours as mybinder.org's, so READMEs look alike)."""

from __future__ import annotations

from functools import lru_cache

# A tiny flat badge; hand-written because badge libraries (pybadges) pull in fonts and PIL.
_TEMPLATE = """<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" aria-label="launch: binder">
<title>launch: binder</title>
<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>
<clipPath id="r"><rect width="{width}" height="20" rx="3" fill="#fff"/></clipPath>
<g clip-path="url(#r)"><rect width="{left}" height="20" fill="#555"/><rect x="{left}" width="{right}" height="20" fill="#579aca"/><rect width="{width}" height="20" fill="url(#s)"/></g>
<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">
{logo}<text x="{left_text}" y="14">launch</text><text x="{right_text}" y="14">binder</text></g></svg>"""

_LOGO = '<circle cx="10" cy="10" r="5" fill="none" stroke="#f5a252" stroke-width="2"/><circle cx="10" cy="10" r="2" fill="#e66581"/>'


@lru_cache(maxsize=2)
def badge_svg(with_logo: bool = False) -> str:
    logo_width = 14 if with_logo else 0
    left, right = 52 + logo_width, 48
    return _TEMPLATE.format(
        width=left + right,
        left=left,
        right=right,
        left_text=logo_width + 26,
        right_text=left + right // 2,
        logo=_LOGO if with_logo else "",
    )

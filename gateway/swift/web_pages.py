"""The HTML pages static web composes (staticweb.py): a pseudo-directory's
listing and the "listings disabled" page. Pure functions.

The structure is Swift's, since site owners style it with their own stylesheet
(X-Container-Meta-Web-Listings-CSS): ids title, listing, heading, parent; rows
of class "item" plus "subdir" or "type-<type> type-<subtype>"; cells colname,
colsize, coldate. Link targets are relative ("./name", "../"), with dots
percent-encoded so that no name ("..") climbs out of the listing.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from urllib.parse import quote

from kurastore.gateway.swift.listing import ObjectEntry, Subdir, swift_time

LISTING_STYLE = ("h1 {font-size: 1em; font-weight: bold;}",
                 "th {text-align: left; padding: 0px 1em 0px 1em;}",
                 "td {padding: 0px 1em 0px 1em;}",
                 "a {text-decoration: none;}")
DISABLED_STYLE = ("h1 {font-size: 1em; font-weight: bold;}", "p {font-size: 2}")
BLANK = "&nbsp;"


def css_href(css: str, prefix: str) -> str:
    """The stylesheet's address from the listing of `prefix`: as given when
    absolute, else relative to the container."""
    if css.startswith(("/", "http://", "https://")):
        return quote(css, safe=":/")
    return "../" * prefix.count("/") + quote(css)


def tempurl_links(query: Mapping[str, str]) -> tuple[str, str]:
    """(the query every link carries, the TempURL's prefix): a prefix TempURL's
    own parameters, so a browser can walk the tree it opens; ("", "") otherwise."""
    prefix = query.get("temp_url_prefix")
    if prefix is None or "temp_url_sig" not in query:
        return "", ""
    parts = [f"temp_url_prefix={quote(prefix)}",
             f"temp_url_expires={quote(query.get('temp_url_expires', ''))}",
             f"temp_url_sig={quote(query.get('temp_url_sig', ''))}"]
    if query.get("temp_url_ip_range"):
        parts.append(f"temp_url_ip_range={quote(query['temp_url_ip_range'])}")
    if "inline" in query:
        parts.append("inline")
    return "?" + "&amp;".join(parts), prefix


def human_size(size: int) -> str:
    """1023 -> "1023", 1048576 -> "1Mi": binary units, rounded at each step (Swift's)."""
    value, units = float(size), ""
    for unit in "KMGTPEZY":
        if value < 1024:
            break
        value, units = round(value / 1024), unit
    return f"{round(value)}{units}i" if units else str(int(value))


def _head(label: str, css: str | None, style: tuple[str, ...]) -> str:
    out = ("<!DOCTYPE html>\n<html>\n <head>\n"
           f"  <title>Listing of {html.escape(label)}</title>\n")
    if css is not None:
        return out + f'  <link rel="stylesheet" type="text/css" href="{css}" />\n </head>\n'
    rules = "".join(f"   {rule}\n" for rule in style)
    return out + f'  <style type="text/css">\n{rules}  </style>\n </head>\n'


def disabled_page(label: str, css: str | None, index: str) -> str:
    """The 404 page of a pseudo-directory when listings are off."""
    body = (" <body>\n  <h1>Web Listing Disabled</h1>\n"
            "  <p>The owner of this web site has disabled web listing.</p>\n"
            "  <p>If you are the owner of this web site, you can enable web listing by"
            " setting X-Container-Meta-Web-Listings.</p>\n")
    if index:
        body += ("  <h1>Index File Not Found</h1>\n  <p>The owner of this web site has set"
                 f" <b>X-Container-Meta-Web-Index: {html.escape(index)}</b>."
                 " However, this file is not found.</p>\n")
    return _head(label, css, DISABLED_STYLE) + body + " </body>\n</html>\n"


def listing_page(label: str, css: str | None, prefix: str, items: list[ObjectEntry | Subdir],
                 links: tuple[str, str] = ("", "")) -> str:
    """The listing of the pseudo-directory `prefix` ("" for the container):
    subdirectories first, then objects; `links` is tempurl_links' answer."""
    query, top = links
    rows = [f'  <h1 id="title">Listing of {html.escape(label)}</h1>\n'
            '  <table id="listing">\n   <tr id="heading">\n'
            '    <th class="colname">Name</th>\n    <th class="colsize">Size</th>\n'
            '    <th class="coldate">Date</th>\n   </tr>\n']
    if len(prefix) > len(top):  # no way up from the top a TempURL opens
        rows.append(_row('id="parent" class="item"', "../" + query, "../", BLANK, BLANK))
    for item in items:
        if isinstance(item, Subdir):
            name = item.name[len(prefix):]
            rows.append(_row('class="item subdir"', _href(name) + query, html.escape(name),
                             BLANK, BLANK))
    for item in items:
        if isinstance(item, ObjectEntry):
            name = item.name[len(prefix):]
            types = " ".join("type-" + html.escape(t.lower())
                             for t in item.content_type.split("/"))
            date = swift_time(item.last_modified).split(".")[0].replace("T", " ")
            rows.append(_row(f'class="item {types}"', _href(name) + query, html.escape(name),
                             human_size(item.bytes), date))
    return (_head(label, css, LISTING_STYLE) + " <body>\n" + "".join(rows)
            + "  </table>\n </body>\n</html>\n")


def _href(name: str) -> str:
    return "./" + quote(name).replace(".", "%2E")


def _row(attrs: str, href: str, text: str, size: str, date: str) -> str:
    return (f"   <tr {attrs}>\n"
            f'    <td class="colname"><a href="{href}">{text}</a></td>\n'
            f'    <td class="colsize">{size}</td>\n'
            f'    <td class="coldate">{date}</td>\n'
            "   </tr>\n")

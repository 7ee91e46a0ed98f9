"""Render a benchmark page (content blocks from ``questions/*.json``) into the HTML of one
of a few site styles, each with the clutter real pages carry: menus, cookie banners,
breadcrumbs, "related" links that repeat the topic's keywords, comments, footers.

Block syntax: ``## Heading``, ``| cell | cell |`` (table rows, grouped), ``- item``
(list items, grouped), ``Q: …``/``A: …`` (forum posts), anything else a paragraph.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any


def render_page(page: dict[str, Any], *, related: Sequence[str]) -> str:
    """The HTML of ``page`` in its ``site`` style; ``related`` are other headlines that
    the site's boilerplate links to."""
    style = page["site"]
    title = html.escape(page["title"])
    body = _STYLES[style](page, _content(page["blocks"], style=style), list(related))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{title}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments)}"
        "</script><style>body{font-family:sans-serif}.hidden{display:none}</style>"
        f"</head>\n<body>\n{body}\n</body></html>\n"
    )


def _content(blocks: Sequence[str], *, style: str) -> str:
    out: list[str] = []
    table: list[str] = []
    items: list[str] = []

    def close_groups() -> None:
        if table:
            out.append("<table class='infobox'><tbody>" + "".join(table) + "</tbody></table>")
            table.clear()
        if items:
            out.append("<ul>" + "".join(items) + "</ul>")
            items.clear()

    for number, block in enumerate(blocks):
        if block.startswith("|"):
            if items:
                close_groups()
            cells = [html.escape(cell.strip()) for cell in block.strip("|").split("|")]
            row = f"<th>{cells[0]}</th>" + "".join(f"<td>{cell}</td>" for cell in cells[1:])
            table.append(f"<tr>{row}</tr>")
            continue
        if block.startswith("- "):
            if table:
                close_groups()
            items.append(f"<li>{html.escape(block[2:])}</li>")
            continue
        close_groups()
        if block.startswith("## "):
            out.append(f"<h2><span class='mw-headline'>{html.escape(block[3:])}</span></h2>")
        elif block.startswith(("Q: ", "A: ")):
            role = "question" if block.startswith("Q: ") else "answer"
            votes = 3 + (number * 7) % 40
            out.append(
                f"<div class='post {role}'><div class='meta'><span class='user'>"
                f"user{1000 + number * 37}</span> <span class='votes'>{votes} votes</span>"
                f"</div><div class='post-body'>{html.escape(block[3:])}</div></div>"
            )
        elif style == "shop":
            # Page builders often emit text in divs, not paragraphs.
            out.append(f"<div class='rte-text'>{html.escape(block)}</div>")
        else:
            out.append(f"<p>{html.escape(block)}</p>")
    close_groups()
    return "\n".join(out)


def _links(titles: Sequence[str]) -> str:
    return "".join(
        f"<li><a href='/article/{n}'><span>{html.escape(t)}</span></a></li>"
        for n, t in enumerate(titles)
    )


def _wiki(page: dict[str, Any], content: str, related: list[str]) -> str:
    title = html.escape(page["title"].split(" - ")[0])
    return f"""<div id='mw-head'><span class='logo'>Peakpedia</span>
<span>The free encyclopedia</span> <span>Create account</span> <span>Log in</span></div>
<div id='mw-panel'><ul><li><a href='/'>Main page</a></li><li><a href='/contents'>Contents</a>
</li><li><a href='/random'>Random article</a></li><li><a href='/help'>Help</a></li>
<li><a href='/donate'>Donate</a></li></ul></div>
<div id='content'><h1 id='firstHeading'>{title}</h1>
<div id='siteSub'>From Peakpedia, the free encyclopedia</div>
<div class='hatnote'><span>This article is about the subject. For other uses, see
{title} (disambiguation).</span></div>
<div class='mw-parser-output'>
{content}
</div>
<div id='catlinks'><span>Categories:</span> <span>Articles with short description</span>
<span>Pages using infobox</span></div></div>
<div id='footer'><ul><li>This page was last edited on 3 May 2024.</li><li>Text is available
under the Creative Commons Attribution-ShareAlike License.</li><li><a href='/privacy'>Privacy
policy</a></li></ul></div>"""


def _news(page: dict[str, Any], content: str, related: list[str]) -> str:
    return f"""<div class='cookie-banner'><p>We use cookies to personalise content and ads and to
analyse our traffic. <a href='/cookies'>Manage preferences</a> <button>Accept all</button></p>
</div>
<header class='site-header'><span class='brand'>The Daily Explainer</span>
<nav><span>News</span> <span>Science</span> <span>History</span> <span>Travel</span>
<span>Health</span> <span>Subscribe</span></nav></header>
<div class='trending'><span>Trending:</span><ul>{_links(related[:2])}</ul></div>
<main><article><h1>{html.escape(page["title"])}</h1>
<p class='byline'>By Staff Writer · Updated 12 March 2024 · 6 min read</p>
{content}
<div class='newsletter'><p>Get the best explainers in your inbox every Friday.
Sign up for our free newsletter.</p></div></article>
<section class='related'><h3>Related stories</h3><ul>{_links(related)}</ul></section></main>
<footer><p>© 2024 The Daily Explainer. All rights reserved.</p><span>About us</span>
<span>Contact</span><span>Advertise</span><span>Terms of use</span></footer>"""


def _blog(page: dict[str, Any], content: str, related: list[str]) -> str:
    return f"""<header><div class='logo'><span>Curious Minds Blog</span></div>
<nav><ul><li><a href='/'>Home</a></li><li><a href='/archive'>Archive</a></li>
<li><a href='/about'>About</a></li></ul></nav></header>
<div class='wrapper'><main><article class='post'><h1 class='entry-title'>
{html.escape(page["title"])}</h1>
<div class='entry-meta'><span>Posted on 14 February 2023</span> <span>by Sam</span>
<span>4 comments</span></div><div class='entry-content'>
{content}
</div></article>
<section id='comments'><h3>4 comments</h3>
<div class='comment'><span class='author'>Maria</span><p>Great article, thanks for writing
this!</p></div>
<div class='comment'><span class='author'>Tom K.</span><p>I always wondered about this.
Shared it with my class.</p></div></section></main>
<aside class='sidebar'><h3>Recent posts</h3><ul>{_links(related)}</ul>
<h3>Categories</h3><ul><li>Science</li><li>Nature</li><li>History</li></ul></aside></div>
<footer><p>Powered by a blogging platform. Theme by someone.</p></footer>"""


def _shop(page: dict[str, Any], content: str, related: list[str]) -> str:
    return f"""<div class='promo-bar'><span>Free shipping on orders over $50</span>
<span>Sign up and get 10% off</span></div>
<header><span class='brand'>Explore More</span>
<nav class='mega-menu'><span>Destinations</span><span>Deals</span><span>Gift cards</span>
<span>Help</span><span>My account</span><span>Cart (0)</span></nav></header>
<div class='breadcrumbs'><span>Home</span> &rsaquo; <span>Guides</span> &rsaquo;
<span>{html.escape(page["title"])}</span></div>
<div class='page-content'><h1>{html.escape(page["title"])}</h1>
<div class='rte'>
{content}
</div></div>
<div class='also-viewed'><h3>Customers also viewed</h3><ul>{_links(related)}</ul></div>
<div class='reviews'><span>★★★★☆</span> <span>4.6 out of 5</span>
<span>(1,284 reviews)</span></div>
<footer><div><span>About</span> <span>Careers</span> <span>Press</span></div>
<p>Prices include VAT. © 2024 Explore More Ltd.</p></footer>"""


def _forum(page: dict[str, Any], content: str, related: list[str]) -> str:
    return f"""<header><span class='site'>AskAnything</span> <span>Questions</span>
<span>Tags</span> <span>Users</span> <span>Log in</span> <span>Sign up</span></header>
<div id='question-header'><h1>{html.escape(page["title"])}</h1>
<span>Asked 3 years ago</span> <span>Viewed 12k times</span></div>
<div id='mainbar'>
{content}
</div>
<div id='sidebar'><h4>Linked</h4><ul>{_links(related)}</ul>
<h4>Hot network questions</h4><ul><li>Why is the sky blue?</li>
<li>Is it safe to eat raw cookie dough?</li></ul></div>
<footer><p>Site design / logo © 2024. User contributions licensed under CC BY-SA.</p></footer>"""


_STYLES = {"wiki": _wiki, "news": _news, "blog": _blog, "shop": _shop, "forum": _forum}

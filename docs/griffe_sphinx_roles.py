"""Sphinx roles in docstrings become cross-references when the site is built.

ntkit's docstrings are numpydoc and refer to other objects the Sphinx way:
``:func:`ntkit.ops.gram```, ``:class:`~ntkit.ops.KernelOperator```, ``:mod:`ntkit._device```,
``:meth:`to_dense```, ``:func:`gram``` (a name relative to where the docstring lives),
``:data:`MAX_JITTER```, ``:attr:`...```. mkdocstrings renders docstrings as Markdown, where those
roles would show literally. This griffe extension (loaded by mkdocstrings, see ``mkdocs.yml``)
rewrites them in the loaded docstrings -- the source files are not touched -- into mkdocs-autorefs
references::

    :func:`~ntkit.ops.gram`
    ->  <autoref identifier="ntkit.ops.gram" optional class="ntkit-role"><code>gram</code></autoref>

(``~`` shows the last component, ``text <target>`` shows the text, ``!`` gives code without a link.)

Resolution of the target, in order:

1. ``ntkit...`` / ``ntkit_native...``: taken as written.
2. A name visible from the docstring's object (its members, then its parents' members and
   imports, as Python would look it up): griffe's ``Object.resolve``; ``A.b`` resolves ``A`` and
   appends ``b``. This gives the canonical path (``ntkit.ops._gram.gram``); autorefs maps it to
   the public entry (``#ntkit.ops.gram``) through the aliases mkdocstrings registers.
3. Otherwise the one public object in the package whose dotted path ends with the name.

The reference is *optional*: when its target has no entry in the site (a private module such as
``ntkit._device``, a builtin such as ``ValueError``), autorefs renders plain code, without a warning,
so ``mkdocs build --strict`` does not turn a private reference into a failure.
tests/test_docs.py checks that no role is left literal and that every role naming a public object
became a link.
"""

from __future__ import annotations

import html
import re
from collections import defaultdict

import griffe

# :role:`target`, :role:`~target`, :role:`!target`, :role:`text <target>`, with optional py: domain.
ROLE_RE = re.compile(
    r":(?:py:)?(?P<role>func|class|mod|data|meth|attr|obj|exc|const|type|term|ref):`(?P<body>[^`\n]+)`"
)
ROOTS = ("ntkit", "ntkit_native")


def _is_public(path: str) -> bool:
    return not any(part.startswith("_") for part in path.split("."))


def _walk(obj):
    """Every object defined in ``obj``'s tree (aliases skipped: their docstring is their target's)."""
    yield obj
    for member in list(obj.members.values()):
        if member.is_alias:
            continue
        yield from _walk(member)


def _all_paths(pkg):
    """Every dotted path in the package tree, aliases included (public re-exports are aliases)."""
    stack, seen = [pkg], set()
    while stack:
        obj = stack.pop()
        if obj.path in seen:
            continue
        seen.add(obj.path)
        yield obj.path
        if obj.is_alias:
            continue
        stack.extend(obj.members.values())


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles into optional autorefs in every docstring of a loaded package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        if pkg.name not in ROOTS:
            return
        by_suffix = defaultdict(set)
        for path in _all_paths(pkg):
            if _is_public(path):
                parts = path.split(".")
                for i in range(1, len(parts)):
                    by_suffix[".".join(parts[i:])].add(path)
        for obj in _walk(pkg):
            if obj.docstring is not None and ":" in obj.docstring.value:
                obj.docstring.value = ROLE_RE.sub(lambda m, o=obj: self._replace(m, o, by_suffix), obj.docstring.value)

    def _replace(self, match: re.Match, obj, by_suffix) -> str:
        role, body = match["role"], match["body"].strip()
        explicit = re.fullmatch(r"(?P<text>.*?)\s*<(?P<target>[^<>]+)>", body)
        if explicit:
            text, target = explicit["text"], explicit["target"]
        else:
            text, target = None, body
        no_link = target.startswith("!")
        target = target.lstrip("!")
        if target.startswith("~"):
            target = target[1:]
            text = text or target.rsplit(".", 1)[-1]
        text = text or target
        code = f"<code>{html.escape(text)}</code>"
        if no_link or role in ("term", "ref"):
            return code
        identifier = self._resolve(target.lstrip("."), obj, by_suffix)
        return f'<autoref identifier="{html.escape(identifier)}" optional class="ntkit-role">{code}</autoref>'

    @staticmethod
    def _resolve(target: str, obj, by_suffix) -> str:
        head, _, rest = target.partition(".")
        if head in ROOTS:
            return target
        try:
            base = obj.resolve(head)
        except (griffe.NameResolutionError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            base = None
        if base is not None:
            return f"{base}.{rest}" if rest else base
        candidates = by_suffix.get(target, set())
        if len(candidates) == 1:
            return next(iter(candidates))
        return target

"""What a pusher reads: one header per rejected ref, then one ``path: problem (hint)`` line per problem.

post-receive imports this for :data:`PREFIX` alone, so it imports nothing at run time.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..checks.problems import Problem

PREFIX = "hf-publish:"
MAX_LINES = 20


def render(repo: str, ref: str, target: str, problems: list[Problem], *, enforce: bool) -> list[str]:
    """The lines for one ref with problems; ``enforce`` false turns "rejected" into "would reject".

    A ref name may hold bidi controls and other characters git allows: it is printed escaped, as every path is.
    """
    from ..redact import escape

    repo, ref, target = escape(repo), escape(ref), escape(target)
    if enforce:
        head = f"{PREFIX} rejected {ref} of {repo}, which publishes to {target}:"
    else:
        head = (f"{PREFIX} would reject {ref} of {repo}, which publishes to {target} "
                "(enforce is off, so it lands in Gitea but is not published):")
    lines = [head]
    shown = problems if len(problems) <= MAX_LINES else problems[:MAX_LINES - 1]
    # Paths come escaped already; a message may quote a ref or tag name, which is escaped here.
    from ..checks.problems import show_path

    lines += [f"  {show_path(str(p))}" for p in shown]
    if len(shown) < len(problems):
        lines.append(f"  … and {len(problems) - len(shown)} more")
    return lines

"""Comments on one account's posts: the posts with new comments first, a post's thread, and the actions.

Every member may reply publicly, hide, show, delete and reply privately; the actions
that reach Instagram run in jobs (the services queue them), and the comment says what is
on its way until it is done or why it failed.
"""

from __future__ import annotations

from flask import Blueprint, abort, g, request
from flask_login import current_user
from werkzeug.exceptions import NotFound

from ..auth import account_scoped
from ..security import form_id
from ..services import comments
from ..services.comments import CommentRefused
from ..services.conversations import account_products
from ..templating import render
from .errors import error_page
from .loaders import get_post_or_404

bp = account_scoped(Blueprint("comments", __name__, url_prefix="/accounts/<int:account_id>"))


def _product_filter() -> int | None:
    return form_id(request.args.get("product"), required=False)


def _page(post=None, product=None, nodes=None, *, status: int = 200):
    product_id = _product_filter()
    summaries = comments.post_summaries(g.account.id, product_id=product_id)
    return render("comments/index.html", "partials/_comment_thread.html", status=status, account=g.account,
                  summaries=summaries, post=post, product=product, nodes=nodes or [], product_id=product_id,
                  products=account_products(g.account.id), active_id=post.id if post is not None else None)


@bp.get("/comments/")
def index():
    """Posts with comments, the most recently commented first (filter: ?product=<id>)."""
    return _page()


@bp.get("/comments/posts/<int:post_id>")
def post(post_id: int):
    """One post's comments, threaded; opening them marks them read."""
    get_post_or_404(post_id)
    comments.mark_post_read(g.account.id, post_id)
    found, product = comments.get_post(g.account.id, post_id)
    return _page(found, product, comments.post_comments(g.account.id, post_id))


def _comment_response(comment_id: int, *, error: str | None = None, status: int = 200):
    node = comments.comment_node(g.account.id, comment_id)
    if node is None:
        abort(404)
    return render("partials/_comment.html", "partials/_comment.html", status=status, node=node, account=g.account,
                  error=error)


@bp.errorhandler(comments.CommentNotFound)
def _not_found(_error):
    return error_page(NotFound())


@bp.post("/comments/<int:comment_id>/reply")
def reply(comment_id: int):
    """Reply publicly under a comment (the Comments API, in a job)."""
    try:
        comments.reply_publicly(g.account.id, comment_id, current_user.id, request.form.get("text", ""))
    except CommentRefused as exc:
        if exc.status == 404:
            abort(404)
        return _comment_response(comment_id, error=exc.reason, status=exc.status)
    return _comment_response(comment_id)


@bp.post("/comments/<int:comment_id>/private-reply")
def private_reply(comment_id: int):
    """Reply privately: a DM to the commenter (once per comment, within 7 days)."""
    try:
        comments.reply_privately(g.account.id, comment_id, current_user.id, request.form.get("text", ""),
                                 request.form.get("client_token"))
    except CommentRefused as exc:
        if exc.status == 404:
            abort(404)
        return _comment_response(comment_id, error=exc.reason, status=exc.status)
    return _comment_response(comment_id)


@bp.post("/comments/<int:comment_id>/hide")
def hide(comment_id: int):
    """Hide a comment from everyone but its author."""
    return _act(comment_id, lambda: comments.set_hidden(g.account.id, comment_id, True))


@bp.post("/comments/<int:comment_id>/unhide")
def unhide(comment_id: int):
    """Show a hidden comment again."""
    return _act(comment_id, lambda: comments.set_hidden(g.account.id, comment_id, False))


@bp.post("/comments/<int:comment_id>/delete")
def delete(comment_id: int):
    """Delete a comment on the account's post."""
    return _act(comment_id, lambda: comments.delete_comment(g.account.id, comment_id))


def _act(comment_id: int, action):
    try:
        action()
    except CommentRefused as exc:
        if exc.status == 404:
            abort(404)
        return _comment_response(comment_id, error=exc.reason, status=exc.status)
    return _comment_response(comment_id)

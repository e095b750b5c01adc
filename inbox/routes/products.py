"""Products of one account: the catalogue, the posts page, post links and the thread's product.

Members read the catalogue, link posts and choose a conversation's product; admins add,
edit, archive and import products.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, request, url_for
from flask_login import current_user
from werkzeug.exceptions import NotFound

from ..auth import account_scoped, require_role
from ..security import form_id, same_site
from ..services import jobruns
from ..services.products import assignment
# The views below are called catalogue and posts.
from ..services.products import catalogue as catalogue_service
from ..services.products import posts as posts_service
from ..services.products.catalogue import NotFoundError, ProductError
from ..templating import is_htmx_fragment_request, render
from .errors import error_page
from .loaders import get_conversation_or_404, get_post_or_404, get_product_or_404

bp = account_scoped(Blueprint("products", __name__, url_prefix="/accounts/<int:account_id>"))


@bp.errorhandler(NotFoundError)
def _not_found(_error):
    return error_page(NotFound())


def _product_id(value) -> int | None:
    return None if value in (None, "", "none") else form_id(value)


# --- Catalogue ----------------------------------------------------------------------------

@bp.get("/products/")
def catalogue():
    """The account's products (archived ones on request)."""
    show_archived = request.args.get("archived") == "1"
    items = catalogue_service.list_products(g.account.id, include_archived=show_archived)
    return render("products/index.html", account=g.account, products=items, show_archived=show_archived,
                  stats=catalogue_service.product_stats(g.account.id), is_admin=g.role == "admin")


@bp.get("/products/new")
@require_role("admin")
def new_product():
    """The form for a new product."""
    return render("products/form.html", account=g.account, product=None, values={}, error=None)


@bp.post("/products/")
@require_role("admin")
def create_product():
    """Add a product (admins)."""
    form = request.form
    try:
        product = catalogue_service.create_product(g.account.id, name=form.get("name"), sku=form.get("sku"),
                                                   price=form.get("price"), currency=form.get("currency"),
                                                   keywords=form.get("keywords"))
    except ProductError as exc:
        return render("products/form.html", account=g.account, product=None, values=form, error=str(exc),
                      status=422)
    flash(f"Added {product.label}.", "success")
    return redirect(url_for("products.catalogue"), 303)


@bp.get("/products/<int:product_id>/edit")
@require_role("admin")
def edit_product(product_id: int):
    """The form for one product."""
    product = get_product_or_404(product_id)
    return render("products/form.html", account=g.account, product=product, values={}, error=None)


@bp.post("/products/<int:product_id>")
@require_role("admin")
def update_product(product_id: int):
    """Change a product (admins)."""
    form = request.form
    product = get_product_or_404(product_id)
    try:
        catalogue_service.update_product(g.account.id, product.id, name=form.get("name"), sku=form.get("sku"),
                                         price=form.get("price"), currency=form.get("currency"),
                                         keywords=form.get("keywords"))
    except ProductError as exc:
        return render("products/form.html", account=g.account, product=product, values=form, error=str(exc),
                      status=422)
    flash(f"Saved {product.label}.", "success")
    return redirect(url_for("products.catalogue"), 303)


@bp.post("/products/<int:product_id>/archive")
@require_role("admin")
def archive_product(product_id: int):
    """Archive a product: no longer matched, offered or assigned (admins)."""
    product = catalogue_service.set_active(g.account.id, product_id, False)
    flash(f"Archived {product.label}.", "success")
    return redirect(url_for("products.catalogue"), 303)


@bp.post("/products/<int:product_id>/restore")
@require_role("admin")
def restore_product(product_id: int):
    """Bring an archived product back (admins)."""
    product = catalogue_service.set_active(g.account.id, product_id, True)
    flash(f"Restored {product.label}.", "success")
    return redirect(url_for("products.catalogue", archived=1), 303)


@bp.get("/products/import")
@require_role("admin")
def import_form():
    """Upload a CSV of products."""
    return render("products/import.html", account=g.account, report=None)


@bp.post("/products/import")
@require_role("admin")
def import_products():
    """Add the products of a CSV and report the rows that were not added (admins)."""
    upload = request.files.get("file")
    data = upload.read() if upload is not None else (request.form.get("csv") or "").encode()
    if not data.strip():
        return render("products/import.html", account=g.account, report=None,
                      error="Choose a CSV file to import.", status=422)
    report = catalogue_service.import_products_csv(g.account.id, data)
    return render("products/import.html", account=g.account, report=report, status=200 if report.ok else 422)


# --- Posts --------------------------------------------------------------------------------

@bp.get("/posts/")
def posts():
    """Posts seen in the inbox and the account's own, with their link state."""
    state = request.args.get("state", "all")
    if state not in posts_service.POST_STATES:
        state = "all"
    run = jobruns.recent_runs(g.account.id, (posts_service.LOAD_OWN_MEDIA,))
    return render("products/posts.html", account=g.account, posts=posts_service.list_posts(g.account.id, state),
                  state=state, counts=posts_service.post_counts(g.account.id),
                  options=catalogue_service.list_products(g.account.id), run=run[0] if run else None)


@bp.post("/posts/load")
def load_own_media():
    """Start loading the account's own posts from Instagram (a background run)."""
    run, _ = posts_service.start_load_own_media(g.account.id, current_user.id)
    if is_htmx_fragment_request():
        return render("runs/run.html", "partials/_run.html", run=run)
    return redirect(url_for("products.posts"), 303)


def _post_response(post_id: int):
    post = get_post_or_404(post_id)
    if is_htmx_fragment_request():
        return render("products/posts.html", "partials/_post_row.html", post=post,
                      options=catalogue_service.list_products(g.account.id))
    return redirect(same_site(request.referrer) or url_for("products.posts"), 303)


@bp.post("/posts/<int:post_id>/link")
def link_post(post_id: int):
    """Link a post to a product by hand (replaces an automatic link)."""
    product_id = _product_id(request.form.get("product_id"))
    if product_id is None:
        abort(400)
    try:
        posts_service.link_post(g.account.id, post_id, product_id, current_user.id)
    except ProductError as exc:
        flash(str(exc), "error")
    return _post_response(post_id)


@bp.post("/posts/<int:post_id>/unlink")
def unlink_post(post_id: int):
    """Remove a post's link."""
    posts_service.unlink_post(g.account.id, post_id)
    return _post_response(post_id)


# --- In a thread --------------------------------------------------------------------------

def _thread_product(conversation_id: int, status: int = 200, error: str | None = None, *, oob: bool = False):
    conversation = get_conversation_or_404(conversation_id)
    return render("products/thread_product.html", "partials/_thread_product.html", conversation=conversation,
                  account=g.account, error=error, status=status, oob=oob)


@bp.get("/conversations/<int:conversation_id>/product")
def thread_product(conversation_id: int):
    """A conversation's product, the dropdown and "why this product"."""
    return _thread_product(conversation_id)


@bp.post("/conversations/<int:conversation_id>/product")
def set_thread_product(conversation_id: int):
    """Choose the conversation's product by hand (it wins over later automatic evidence)."""
    try:
        assignment.set_conversation_product(g.account.id, conversation_id, _product_id(request.form.get("product_id")),
                                            current_user.id)
    except ProductError as exc:
        # htmx swaps nothing on a 4xx: the error goes in with a 200, out of band.
        return _thread_product(conversation_id, 200 if is_htmx_fragment_request() else 422, str(exc), oob=True)
    if not is_htmx_fragment_request():
        return redirect(url_for("products.thread_product", conversation_id=conversation_id), 303)
    return _thread_product(conversation_id, oob=True)


@bp.post("/conversations/<int:conversation_id>/product/automatic")
def automatic_thread_product(conversation_id: int):
    """Let automatic evidence decide the conversation's product again."""
    assignment.clear_manual_choice(g.account.id, conversation_id, current_user.id)
    if not is_htmx_fragment_request():
        return redirect(url_for("products.thread_product", conversation_id=conversation_id), 303)
    return _thread_product(conversation_id, oob=True)


def _post_link(attachment_id: int, status: int = 200, error: str | None = None, *, changed: bool = False):
    """The card's link state; to htmx posts, out of band: the card, the link box, the thread's product."""
    attachment = posts_service.get_post_attachment(g.account.id, attachment_id)
    if not is_htmx_fragment_request() or request.method == "GET":
        return render("products/post_link.html", "partials/_post_link.html", attachment=attachment,
                      account=g.account, error=error, status=status)
    conversation = get_conversation_or_404(attachment.message.conversation_id)
    # htmx swaps nothing on a 4xx: an error goes in with a 200.
    return render("partials/_post_link_response.html", attachment=attachment, message=attachment.message,
                  conversation=conversation, account=g.account, error=error, changed=changed)


@bp.get("/attachments/<int:attachment_id>/post-link")
def attachment_post_link(attachment_id: int):
    """The link state of the post a shared-post card shows."""
    return _post_link(attachment_id)


@bp.post("/attachments/<int:attachment_id>/link")
def link_attachment(attachment_id: int):
    """Link the post of a shared-post card to a product; the conversation is assigned too."""
    product_id = _product_id(request.form.get("product_id"))
    if product_id is None:
        return _post_link(attachment_id, 422, "Choose a product.")
    try:
        assignment.link_attachment(g.account.id, attachment_id, product_id, current_user.id)
    except ProductError as exc:
        return _post_link(attachment_id, 422, str(exc))
    return _post_link(attachment_id, changed=True)


@bp.post("/attachments/<int:attachment_id>/unlink")
def unlink_attachment(attachment_id: int):
    """Remove the link of the post a shared-post card shows."""
    _, post = posts_service.post_for_attachment(g.account.id, attachment_id)
    posts_service.unlink_post(g.account.id, post.id)
    return _post_link(attachment_id, changed=True)

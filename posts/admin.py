import hashlib
from datetime import datetime
from functools import partial

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AutocompleteSelect, AutocompleteSelectMultiple
from django.contrib.messages.storage import default_storage
from django.core.exceptions import PermissionDenied
from django.db import connection, models, transaction
from django.http import HttpRequest, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import capfirst
from django.utils.timezone import get_current_timezone, localtime
from django.views.decorators.http import require_POST

from . import checks, images, links, related, services, tasks
from .desk import counted
from .markdown import escape_markdown, plain_text, render_markdown, word_count
from .models import (
    Area,
    Category,
    Inspection,
    Organisation,
    Post,
    PostEvent,
    PostImage,
    PostUpdate,
    Region,
    RelatedLink,
    Sponsorship,
    StandardRating,
    Tag,
)
from .search import index_post
from .validators import EARLIEST_YEAR, row_id_in

# Links typed without a scheme are taken as https (Django 6's default, chosen now).
HTTPS_URLS = {models.URLField: {"assume_scheme": "https"}}
# Uploads too large to resize are refused in the form, with the reason.
IMAGE_UPLOADS = {models.ImageField: {"form_class": images.ImageUploadField}}


class FollowedAdmin(admin.ModelAdmin):
    """For what readers follow (Post.topic_keys): they follow it by its slug, so
    its slug is set once, when it is made. A new one left every follower
    following nothing, silently, and broke the address of its page and feed."""

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        return readonly if obj is None else [*readonly, "slug"]

    def get_prepopulated_fields(self, request: HttpRequest, obj=None):
        return super().get_prepopulated_fields(request, obj) if obj is None else {}


class ReindexesPostsAdmin(admin.ModelAdmin):
    """For places, organisations, categories and tags: their names are part of
    posts' search entries."""

    def posts_mentioning(self, obj) -> models.QuerySet:
        raise NotImplementedError

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if change:
            for post in self.posts_mentioning(form.instance).distinct():
                index_post(post)

    # Deleted (an organisation: areas and regions are protected while used), its
    # name goes from the posts' entries, which still found them by it.
    def delete_model(self, request: HttpRequest, obj) -> None:
        self.delete_queryset(request, type(obj).objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        posts = {post for obj in queryset for post in self.posts_mentioning(obj)}
        super().delete_queryset(request, queryset)
        for post in posts:
            index_post(post)


@admin.register(Region)
class RegionAdmin(ReindexesPostsAdmin, FollowedAdmin):
    list_display = ["name", "slug"]
    search_fields = ["name"]
    prepopulated_fields = {"slug": ["name"]}

    def posts_mentioning(self, region: Region) -> models.QuerySet:
        return Post.objects.filter(inspections__area__region=region)


@admin.register(Area)
class AreaAdmin(ReindexesPostsAdmin, FollowedAdmin):
    list_display = ["name", "region"]
    list_filter = ["region"]
    search_fields = ["name"]
    prepopulated_fields = {"slug": ["name"]}

    def posts_mentioning(self, area: Area) -> models.QuerySet:
        return Post.objects.filter(inspections__area=area)


class OrganisationForm(forms.ModelForm):
    def clean_owners(self):
        owners = self.cleaned_data["owners"]
        # Saved so, a post's fact box read "Kent CRC (owned by Kent CRC)", and an
        # owner's page listed itself among what it owned.
        me = self.instance
        if me.pk is not None and me.pk in owners_at_any_remove(owners):
            raise forms.ValidationError(
                "An organisation cannot own itself, nor be owned by what it owns."
            )
        return owners


def owners_at_any_remove(owners: models.QuerySet) -> set[int]:
    """The ids of these organisations, their owners, their owners' owners and so on.

    A level at a time, each id once: a loop already saved ends the walk rather than
    going round it forever."""
    found: set[int] = set()
    level = set(owners.values_list("pk", flat=True))
    while level:
        found |= level
        level = (
            set(
                Organisation.owners.through.objects.filter(
                    from_organisation__in=level
                ).values_list("to_organisation", flat=True)
            )
            - found
        )
    return found


@admin.register(Organisation)
class OrganisationAdmin(ReindexesPostsAdmin, FollowedAdmin):
    form = OrganisationForm
    list_display = ["name", "kind"]
    list_filter = ["kind"]
    search_fields = ["name"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["owners"]

    def posts_mentioning(self, organisation: Organisation) -> models.QuerySet:
        return Post.objects.filter(
            models.Q(inspections__organisations=organisation)
            | models.Q(inspections__organisations__owners=organisation)
        )


@admin.register(Category)
class CategoryAdmin(ReindexesPostsAdmin, FollowedAdmin):
    list_display = ["name", "slug"]
    search_fields = ["name"]
    prepopulated_fields = {"slug": ["name"]}

    def posts_mentioning(self, category: Category) -> models.QuerySet:
        return category.posts.all()


@admin.register(Tag)
class TagAdmin(ReindexesPostsAdmin):
    list_display = ["name", "slug"]
    search_fields = ["name"]
    prepopulated_fields = {"slug": ["name"]}

    def posts_mentioning(self, tag: Tag) -> models.QuerySet:
        return tag.posts.all()


@admin.register(Sponsorship)
class SponsorshipAdmin(admin.ModelAdmin):
    formfield_overrides = {**HTTPS_URLS, **IMAGE_UPLOADS}
    list_display = ["name", "category", "starts_on", "ends_on"]
    list_filter = ["category"]


class InlineFormSet(forms.BaseInlineFormSet):
    """An inline whose queries do not grow with its rows: each row's parent is the
    page's own, not read again a row at a time, and the names of the options chosen
    in an autocomplete column are read for every row at once (Django's widget reads
    each row's on its own)."""

    def _construct_form(self, i, **kwargs):
        form = super()._construct_form(i, **kwargs)
        if form.instance.pk is not None:
            setattr(form.instance, self.fk.name, self.instance)
        return form

    def add_fields(self, form: forms.Form, index: int | None) -> None:
        super().add_fields(form, index)
        for name, field in form.fields.items():
            widget = getattr(field.widget, "widget", field.widget)  # admin's wrapper
            if isinstance(widget, ChosenReadOnce):
                widget.chosen_in_every_row = partial(self.chosen_in_every_row, name)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._chosen: dict[str, dict[str, models.Model]] = {}

    def chosen_in_every_row(self, name: str) -> dict[str, models.Model]:
        """The options chosen in the column, by value, from the field's own choices."""
        if name not in self._chosen and not self.forms:
            return {}
        if name not in self._chosen:
            field = self.forms[0].fields[name]
            values = set()
            for form in self.forms:
                value = form[name].value()
                values.update(value if isinstance(value, list | tuple) else [value])
            wanted = [str(v) for v in values if v not in field.empty_values]
            self._chosen[name] = {
                str(choice.pk): choice
                for choice in field.queryset.filter(pk__in=wanted)
            }
        return self._chosen[name]


class ChosenReadOnce:
    """An autocomplete widget naming its chosen options from those its formset read
    for every row at once; alone (a new row's template), as Django's does."""

    chosen_in_every_row = None

    def optgroups(self, name, value, attr=None):
        if self.chosen_in_every_row is None:
            return super().optgroups(name, value, attr)
        chosen = self.chosen_in_every_row()
        options = []
        if not self.is_required and not self.allow_multiple_selected:
            options.append(self.create_option(name, "", "", False, 0))
        for key, choice in chosen.items():
            if key in value:
                label = self.choices.field.label_from_instance(choice)
                options.append(
                    self.create_option(name, choice.pk, label, True, len(options))
                )
                if not self.allow_multiple_selected:
                    break
        return [(None, options, 0)]


class InlineAutocompleteSelect(ChosenReadOnce, AutocompleteSelect):
    pass


class InlineAutocompleteSelectMultiple(ChosenReadOnce, AutocompleteSelectMultiple):
    pass


class InlineAutocomplete:
    """For an inline on InlineFormSet: its autocomplete fields name their chosen
    options in one query for all its rows."""

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):
        if db_field.name in self.get_autocomplete_fields(request):
            kwargs.setdefault(
                "widget",
                InlineAutocompleteSelect(
                    db_field, self.admin_site, using=kwargs.get("using")
                ),
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request: HttpRequest, **kwargs):
        if db_field.name in self.get_autocomplete_fields(request):
            kwargs.setdefault(
                "widget",
                InlineAutocompleteSelectMultiple(
                    db_field, self.admin_site, using=kwargs.get("using")
                ),
            )
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class LabelledFieldsFormSet(InlineFormSet):
    """Django's tabular inline heads each column but labels none of the fields
    under it: a screen reader, going from field to field, heard no name. Each
    field is named as its column heading names it."""

    def add_fields(self, form: forms.Form, index: int | None) -> None:
        super().add_fields(form, index)  # DELETE and the foreign key come here
        for name, field in form.fields.items():
            if not field.widget.is_hidden:
                # The bound field's label: a form's own field may have none set.
                label = capfirst(form[name].label)
                # On the widget a related field's wrapper renders: the wrapper's
                # own attributes are the page's first copy's, not this row's.
                widget = getattr(field.widget, "widget", field.widget)
                widget.attrs.setdefault("aria-label", label)


class LabelledTabularInline(admin.TabularInline):
    formset = LabelledFieldsFormSet


class StandardRatingFormSet(LabelledFieldsFormSet):
    def clean(self) -> None:
        super().clean()
        # The database refuses only the very same name: "Leadership" and
        # "LEADERSHIP" were two rows of the fact box, rated apart.
        seen = set()
        for form in self.forms:
            standard = form.cleaned_data.get("standard") if form.is_valid() else None
            if not standard or self._should_delete_form(form):
                continue
            if standard.casefold() in seen:
                raise forms.ValidationError(
                    f"“{standard}” is rated twice: give each standard one rating."
                )
            seen.add(standard.casefold())


class StandardRatingInline(LabelledTabularInline):
    model = StandardRating
    formset = StandardRatingFormSet
    extra = 1


@admin.register(Inspection)
class InspectionAdmin(admin.ModelAdmin):
    formfield_overrides = HTTPS_URLS
    list_display = ["title", "area", "overall", "published_on", "post"]
    # Named: Django's own select_related() leaves out a field that may be empty
    # (a national inspection has no area), and read each row's area on its own.
    list_select_related = ["area", "post"]
    list_filter = ["overall", "type", "area__region"]
    search_fields = ["title", "post__title"]
    autocomplete_fields = ["post", "area", "organisations"]
    inlines = [StandardRatingInline]

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        index_post(form.instance.post)
        # Moved to another post: the one it was on is found by its facts no more,
        # and a page of it opened before holds it still: saved, it dropped what
        # was typed there in it, silently.
        moved = change and "post" in form.changed_data
        if moved and (before := Post.objects.filter(pk=form.initial["post"]).first()):
            index_post(before)
            services.post_touch(post_id=before.pk)

    # Deleted, its facts go from its post's search entry too (the post's own
    # page re-indexes it when an inspection row goes; this page and the list did not).
    def delete_model(self, request: HttpRequest, obj: Inspection) -> None:
        super().delete_model(request, obj)
        index_post(obj.post)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        posts = list(Post.objects.filter(inspections__in=queryset).distinct())
        super().delete_queryset(request, queryset)
        for post in posts:
            index_post(post)

    # Roles: an inspection belongs to its post, and goes with the post's rules.
    def get_queryset(self, request: HttpRequest):
        visible = Post.objects.visible_to(request.user)
        return super().get_queryset(request).filter(post__in=visible)

    def get_object(self, request: HttpRequest, object_id: str, from_field=None):
        inspection = super().get_object(request, object_id, from_field)
        if inspection is not None and request.method == "POST":
            # Its post locked and read again, until the save or delete commits
            # (the admin's transaction), before the permissions ask whether it
            # is editable: read unlocked, an editor publishing it meanwhile let
            # a Contributor's edit land on the live post.
            # Its post deleted meanwhile, it went with it: as if never there.
            locked = Post.objects.filter(pk=inspection.post_id).locked()
            if not locked:
                return None
            inspection.post = locked[0]
        return inspection

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return super().has_change_permission(request, obj) and (
            obj is None or obj.post.is_editable_by(request.user)
        )

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and (
            obj is None or obj.post.is_editable_by(request.user)
        )

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):
        if db_field.name == "post":
            kwargs["queryset"] = Post.objects.editable_by(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class InspectionInline(InlineAutocomplete, admin.StackedInline):
    """The facts; ratings per standard are edited on the inspection's own page."""

    formfield_overrides = HTTPS_URLS
    model = Inspection
    formset = InlineFormSet
    extra = 0
    show_change_link = True
    autocomplete_fields = ["area", "organisations"]

    def get_queryset(self, request: HttpRequest):
        # The rows' chosen organisations, in one query.
        return super().get_queryset(request).prefetch_related("organisations")


class RelatedLinkFormSet(LabelledFieldsFormSet):
    def save_existing_objects(self, commit: bool = True) -> list:
        """Rows given another post are saved anew, once the rest are saved: saved
        in place a row at a time, two rows swapping their posts (to put them in
        the other order) met the one link per pair halfway, a server error."""
        retargeted = [
            form
            for form in self.initial_forms
            if form.instance.pk is not None
            and "to_post" in form.changed_data
            and not self._should_delete_form(form)
        ]
        if not commit or not retargeted:
            return super().save_existing_objects(commit)
        RelatedLink.objects.filter(pk__in=[f.instance.pk for f in retargeted]).delete()
        for form in retargeted:
            form.instance.pk = None  # Django's save leaves a row without one alone
            form.instance._state.adding = True
        saved = super().save_existing_objects(commit)
        for form in retargeted:
            saved.append(self.save_new(form))
            self.changed_objects.append((form.instance, form.changed_data))
        return saved


class RelatedLinkInline(InlineAutocomplete, LabelledTabularInline):
    model = RelatedLink
    formset = RelatedLinkFormSet
    fk_name = "from_post"
    extra = 0
    autocomplete_fields = ["to_post"]
    fields = ["to_post", "type", "order"]
    verbose_name = "related post"
    verbose_name_plural = "related posts (in this order; see the suggestions above)"

    def get_queryset(self, request: HttpRequest):
        # Each row is named "this post → that post".
        return super().get_queryset(request).select_related("to_post")

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):
        if db_field.name == "to_post":
            # What readers may read, or the desk shows the user, as the field's
            # search offers (PostAdmin.get_search_results): the form names the
            # post it links to, so any other id would show the title of someone
            # else's draft. And what this post links to already, which its page
            # names: a post taken off the site since showed as an empty row, and
            # the author's draft could not be saved. This post's only: what an
            # editor linked from one of theirs, they could link from any other.
            visible = Post.objects.visible_to(request.user)
            match = request.resolver_match
            this_post = match and row_id_in(match.kwargs.get("object_id", ""))
            linked = RelatedLink.objects.filter(
                from_post__in=visible, from_post__pk=this_post
            )
            kwargs["queryset"] = (
                Post.objects.published()
                | visible
                | Post.objects.filter(pk__in=linked.values("to_post"))
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class PostUpdateInline(LabelledTabularInline):
    model = PostUpdate
    extra = 0
    verbose_name_plural = "updates and corrections (shown on the post, dated)"


def image_markdown(post_image: PostImage) -> str:
    """What to put in a post's body to show one of its images."""
    alt = escape_markdown(post_image.alt)
    return f"![{alt}]({images.largest_url(post_image.image)})"


class PostImageFormSet(LabelledFieldsFormSet):
    def clean(self) -> None:
        super().clean()
        # Deleted while the body showed it, the page showed a broken image.
        body = self.instance.body
        for form in self.deleted_forms:
            image = form.initial.get("image")  # as stored, whatever was sent
            if image and any(named in body for named in images.named_as(image.name)):
                raise forms.ValidationError(
                    f"The image “{form.initial['alt']}” is in the body: take it out "
                    "of the body before deleting it."
                )


class PostImageInline(LabelledTabularInline):
    model = PostImage
    formset = PostImageFormSet
    formfield_overrides = IMAGE_UPLOADS
    extra = 0
    fields = ["image", "alt", "markdown"]
    readonly_fields = ["markdown"]
    verbose_name_plural = "images for the body (paste the Markdown shown into the body)"

    @admin.display(description="Markdown")
    def markdown(self, post_image: PostImage) -> str:
        if not post_image.pk:
            return "Save to get the Markdown for this image."
        return format_html("<code>{}</code>", image_markdown(post_image))


class MarkdownEditor(forms.Textarea):
    """The body's textarea with a toolbar, the post's images and a live preview
    beside it. The toolbar and preview need JavaScript and stay hidden without it:
    the textarea alone still works."""

    template_name = "admin/posts/markdown_editor.html"

    class Media:
        css = {"all": ["posts/admin/editor.css"]}
        js = ["posts/admin/editor.js"]

    def __init__(self, *, preview_url: str, post_images=(), attrs=None) -> None:
        super().__init__(attrs)
        self.preview_url = preview_url
        self.post_images = list(post_images)

    def render(self, name, value, attrs=None, renderer=None) -> SafeString:
        textarea = forms.Textarea(self.attrs).render(name, value, attrs, renderer)
        context = {
            "textarea": textarea,
            "preview_url": self.preview_url,
            "images": [
                (image.alt, image_markdown(image)) for image in self.post_images
            ],
        }
        return mark_safe(render_to_string(self.template_name, context))  # noqa: S308


class PublicationTimeField(forms.SplitDateTimeField):
    """The publication time as the desk shows it, in London time. In the hour the
    clocks go back 01:30 happens twice, and Django refuses it as ambiguous: a post
    published then (by "publish now") could not be saved again, not even to
    correct it. The time the page showed is the moment it stood for; a time typed
    in that hour, or in the one that never happens in March, is still refused."""

    stored: datetime | None = None  # set by PostForm: the post's time as saved

    def prepare_value(self, value):
        # A first value given in the add page's address (?published_at=…, as
        # for any field) is text, which the day and time boxes could not split:
        # the page was a 500. Read as a time typed in one box is; one that is
        # not a time leaves the boxes empty.
        if isinstance(value, str):
            try:
                value = forms.DateTimeField(required=False).clean(value)
            except forms.ValidationError:
                value = None
        return super().prepare_value(value)

    def compress(self, data_list):
        if data_list and all(data_list):
            typed = datetime.combine(*data_list)
            if self.stored is not None:
                shown = localtime(self.stored).replace(tzinfo=None, microsecond=0)
                if typed == shown:
                    return self.stored
            _refuse_a_year_typed_wrong(typed)
            _refuse_a_time_the_clocks_skip_or_repeat(typed)
        return super().compress(data_list)


def _refuse_a_year_typed_wrong(typed: datetime) -> None:
    # Year 9999 was taken, and the post list's link to it was a 400 (Django
    # reads the year after it); year 1 published with a warning only.
    latest = localtime().year + 1
    if typed.year < EARLIEST_YEAR:
        raise forms.ValidationError(
            f"The date is before {EARLIEST_YEAR}: a typo in the year?"
        )
    if typed.year > latest:
        raise forms.ValidationError(f"The date is after {latest}: a typo in the year?")


def _refuse_a_time_the_clocks_skip_or_repeat(typed: datetime) -> None:
    """Refuse a local time the clocks skip or pass twice, saying which: Django's
    own message ("may be ambiguous or it may not exist") left the author to
    work out which, and what to type instead."""
    zone = get_current_timezone()
    # zoneinfo gives such a time both offsets: fold 0 the one before the change.
    before = typed.replace(tzinfo=zone, fold=0).utcoffset()
    after = typed.replace(tzinfo=zone, fold=1).utcoffset()
    if before < after:
        raise forms.ValidationError(
            f"{typed:%H:%M} does not happen on that day: the clocks go forward. "
            "Choose another time."
        )
    if before > after:
        raise forms.ValidationError(
            f"{typed:%H:%M} happens twice on that day: the clocks go back. "
            "Choose another time."
        )


def _listed(messages: list[str]) -> str:
    """Messages a page lists, short, for the page to send back: each one's
    digest, as a message may be long and holds the author's words."""
    return " ".join(
        hashlib.sha256(message.encode()).hexdigest()[:16] for message in messages
    )


class PostForm(forms.ModelForm):
    publish_despite_warnings = forms.BooleanField(
        required=False,
        help_text="The checks before publishing found warnings; tick to publish "
        "anyway. Blocking problems must be fixed.",
    )
    # What the box confirms: the problems this page lists (the post's as saved,
    # or those a refused publish listed), sent back with it. The body changed
    # as the box was ticked, a warning no page showed was confirmed unread: it
    # is listed and asked again. (Not sent, by a client other than the desk's
    # page: the box confirms what there is.)
    warnings_shown = forms.CharField(widget=forms.HiddenInput, required=False)
    # When the post was last saved as this form showed it. Two people editing
    # one post: a save from a page opened before the other's save would undo it,
    # silently (a draft's page saved over its publication unpublished it).
    opened_at = forms.CharField(widget=forms.HiddenInput, required=False)
    # Set by PostAdmin.get_form: the checks, with what other apps' admins add.
    post_problems = staticmethod(checks.post_problems)
    # Set by PostAdmin.get_form: why the checks refused this form's save, undone
    # (PostAdmin.changeform_view), shown on the form sent again.
    refused: list[str] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Absent for a user without the permission to publish (ROLE_FIELDS).
        if isinstance(field := self.fields.get("published_at"), PublicationTimeField):
            field.stored = self.instance.published_at
        if self.instance.updated_at is not None:
            self.fields["opened_at"].initial = self.instance.updated_at.isoformat()
        # Absent with the box, for a user without the permission to publish.
        if "warnings_shown" in self.fields:
            if self.refused:  # the page now lists why, after its first line
                self.data = self.data.copy()
                self.data[self.add_prefix("warnings_shown")] = _listed(self.refused[1:])
            elif not self.is_bound and self.instance.pk is not None:
                problems = self.post_problems(self.instance)
                self.fields["warnings_shown"].initial = _listed(
                    [problem.message for problem in problems]
                )

    def clean(self) -> dict:
        cleaned = super().clean()
        self._refuse_if_saved_since_opened(cleaned.get("opened_at"))
        if "slug" in self.changed_data and cleaned.get("slug"):
            self._hold_slug(cleaned["slug"])
        # Read here: the instance takes the form's status once clean is done.
        self.publishing = self._publishing(cleaned)
        if self.refused:
            raise forms.ValidationError(self.refused)
        return cleaned

    def publish_refusal(self) -> list[str]:
        """Why this save may not publish its post, or [] when it may: asked once
        the post and its inspections are saved (PostAdmin.save_related). The
        checks read the inspections from the database: asked as the form was
        checked, they read them as they were before this save, and warned of an
        inspection the author was completing, or not of one being emptied."""
        if not self.publishing:
            return []
        problems = self.post_problems(self.instance)
        blocking = [p.message for p in problems if p.blocking]
        if blocking:
            return ["This post cannot be published until this is fixed:", *blocking]
        shown = self.data.get(self.add_prefix("warnings_shown"))
        unread = shown is not None and not set(
            _listed([p.message for p in problems]).split()
        ) <= set(shown.split())
        if problems and (
            unread or not self.cleaned_data.get("publish_despite_warnings")
        ):
            return [
                "Check these warnings, then tick “Publish despite warnings” "
                "to publish anyway:",
                *(p.message for p in problems),
            ]
        return []

    def _refuse_if_saved_since_opened(self, opened: str | None) -> None:
        # Locked from here, the first check, until the desk's save commits (the
        # admin validates and saves in one transaction): what the checks read of
        # the post stays true until it is saved. Beat announcing it (its time
        # come) waits; unlocked, it emailed its readers a post the author was
        # then allowed to take off the site (Post.clean: already live).
        saved = (
            Post.objects.select_for_update()
            .filter(pk=self.instance.pk)
            .values_list("updated_at", flat=True)
            .first()
        )
        # Not sent (a client other than the desk's page): nothing to compare.
        if opened and saved is not None and opened != saved.isoformat():
            # On the form, not the hidden field, whose errors the admin hides.
            self.add_error(
                None,
                "This post was saved by someone else since you opened it (at "
                f"{localtime(saved):%H:%M:%S}), so yours is not saved: it would "
                "undo theirs. Your text is still below to copy; open the post "
                "again to see it as it is now.",
            )

    def _hold_slug(self, slug: str) -> None:
        # Held until the desk's save commits, and taken before the form asks
        # whether the slug is free (validate_unique, after clean): two saves of
        # it at once (a double click on Save of a new post) both found it free,
        # and the second's insert met the first's row, a server error. Now the
        # second waits, finds the first's post, and says so on the form. SQLite
        # needs none: its transactions (IMMEDIATE) take the write lock at BEGIN.
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))", [f"post slug {slug}"]
                )

    def _publishing(self, cleaned: dict) -> bool:
        stored = None if self.instance._state.adding else self.instance.status
        return (
            cleaned.get("status") == Post.Status.PUBLISHED
            and stored != Post.Status.PUBLISHED
        )


class PublishRefused(Exception):
    """The checks before publishing, run on the post as saved with its inspections,
    refuse to publish it: raised to undo the save (PostAdmin.changeform_view)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(reasons)
        self.reasons = reasons


# Not a status of its own: a post published for a time still to come.
SCHEDULED = "scheduled"


class PublicationStatusFilter(admin.SimpleListFilter):
    """A post published for a time to come is scheduled, not on the site: both
    were "Published" to the list's filter."""

    title = "status"
    # The status field's own filter's, so that links to it still filter.
    parameter_name = "status__exact"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [
            (Post.Status.DRAFT, Post.Status.DRAFT.label),
            (Post.Status.REVIEW, Post.Status.REVIEW.label),
            (SCHEDULED, "Scheduled"),
            (Post.Status.PUBLISHED, Post.Status.PUBLISHED.label),
        ]

    def queryset(self, request: HttpRequest, queryset):
        if self.value() == SCHEDULED:
            return queryset.scheduled()
        if self.value() == Post.Status.PUBLISHED:
            return queryset.published()
        if self.value() in (Post.Status.DRAFT, Post.Status.REVIEW):
            return queryset.filter(status=self.value())
        return queryset


@admin.register(Post)
class PostAdmin(admin.ModelAdmin):
    form = PostForm
    list_display = [
        "title",
        "publication_status",
        "published_at",
        "email_subscribers",
        "author",
    ]
    list_select_related = ["author"]  # may be empty: see InspectionAdmin's
    list_filter = [PublicationStatusFilter, "email_subscribers", "categories"]
    search_fields = ["title", "excerpt", "body"]
    prepopulated_fields = {"slug": ["title"]}
    date_hierarchy = "published_at"
    formfield_overrides = {
        **IMAGE_UPLOADS,
        # The admin's split date and time widget stays (the defaults are merged).
        models.DateTimeField: {"form_class": PublicationTimeField},
    }
    actions = ["publish", "submit_for_review"]
    filter_horizontal = ["categories", "tags"]
    readonly_fields = ["related_suggestions", "publishing_checks"]
    inlines = [InspectionInline, RelatedLinkInline, PostImageInline, PostUpdateInline]
    fieldsets = [
        (None, {"fields": ["title", "slug", "excerpt", "body", "opened_at"]}),
        ("Featured image", {"fields": ["featured_image", "featured_image_alt"]}),
        ("Filing", {"fields": ["categories", "tags"]}),
        (
            "Publication",
            {
                "fields": [
                    "status",
                    "published_at",
                    "email_subscribers",
                    "publish_despite_warnings",
                    "warnings_shown",
                ]
            },
        ),
        ("Checks before publishing", {"fields": ["publishing_checks"]}),
        ("Email", {"fields": ["email_format"]}),
        ("Suggested related posts", {"fields": ["related_suggestions"]}),
    ]

    def save_model(self, request: HttpRequest, obj: Post, form, change: bool) -> None:
        # A new post's author is who writes it. A post whose author's account
        # was deleted keeps no byline: given the name of whoever saved it next
        # (an editor fixing a typo), it read as theirs, and was found by it.
        if not change and obj.author_id is None:
            obj.author = request.user
        stored = Post.objects.filter(pk=obj.pk).values("status", "published_at").first()
        previous_status = stored and stored["status"]
        # The form offers a publisher's choices only to publishers; this is the
        # server's own word on it, whatever the request says.
        publishing = Post.Status.PUBLISHED in (obj.status, previous_status)
        changing = obj.status != previous_status
        if publishing and changing and not self.has_publish_permission(request):
            raise PermissionDenied
        was_live = Post.objects.published().filter(pk=obj.pk).exists()
        services.post_save_from_desk(
            post=obj, previous_status=previous_status, by=request.user
        )
        if obj.status == Post.Status.PUBLISHED and (
            previous_status != Post.Status.PUBLISHED
            or stored["published_at"] != obj.published_at
        ):
            level, words = self.publication_said(obj)
            self.message_user(request, _sentences(words), level)
        elif previous_status == Post.Status.PUBLISHED != obj.status:
            level, words = self.unpublication_said(
                obj, was_live=was_live, was_for=stored["published_at"]
            )
            self.message_user(request, _sentences(words), level)

    def publication_said(self, post: Post) -> tuple[int, list[str]]:
        """What a save that published the post, or gave it another time, did, in
        the author's words, and the message's level. A year typed wrong as the
        post was published put it live at once, below a year of posts, emailed to
        every reader, and the page said only that it was "changed successfully":
        the date is said, and a day already past is a warning. The newsletter's
        post admin adds what becomes of its email."""
        when = _when(post.published_at)
        if not post.is_published:
            return messages.SUCCESS, [
                f"“{post.title}” goes live on {when}: until then it is scheduled, "
                "not on the site."
            ]
        if localtime(post.published_at).date() >= localtime().date():
            return messages.SUCCESS, [
                f"“{post.title}” is on the site now (dated {when})."
            ]
        since = Post.objects.published().filter(published_at__gt=post.published_at)
        return messages.WARNING, [
            f"“{post.title}” is on the site now, dated in the past ({when}): it is "
            f"listed as of then, below the {counted(since.count(), 'post', 'posts')} "
            "published since."
        ]

    def unpublication_said(
        self, post: Post, *, was_live: bool, was_for: datetime
    ) -> tuple[int, list[str]]:
        """What a save that took the post back from the site, or from its
        schedule (`was_for`), did, in the author's words, and the message's
        level: the page said only that it was "changed successfully". The
        newsletter's post admin adds what became of its email."""
        if was_live:
            return messages.SUCCESS, [
                f"“{post.title}” is off the site: its page is not found until you "
                "publish it again."
            ]
        return messages.SUCCESS, [
            f"“{post.title}” no longer goes live on {_when(was_for)}: it is not "
            "scheduled any more."
        ]

    def delete_model(self, request: HttpRequest, obj: Post) -> None:
        self.delete_queryset(request, Post.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        with transaction.atomic():
            # Locked before their comments are read: a comment being written
            # (which holds its post) commits first and goes with the others.
            # Read unlocked, the database then found it under the deleted post
            # and refused the deletion, a 500.
            deleted = Post.objects.filter(pk__in=queryset.values("pk")).locked()
            # Their images go with them, unless another post's body shows one:
            # left, they stayed at their addresses for good.
            names = [
                post.featured_image.name for post in deleted if post.featured_image
            ]
            names += PostImage.objects.filter(post__in=deleted).values_list(
                "image", flat=True
            )
            super().delete_queryset(request, queryset)
            transaction.on_commit(
                lambda: services.images_delete_unshown(names=names), robust=True
            )

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        uploaded = (
            [form.instance.featured_image]
            if "featured_image" in form.changed_data
            else []
        )
        for formset in formsets:
            if formset.model is PostImage:
                uploaded += [
                    image_form.instance.image
                    for image_form in formset.forms
                    if "image" in image_form.changed_data and image_form.instance.pk
                ]
        uploaded = [image for image in uploaded if image]
        if refusal := form.publish_refusal():
            # Stored as the rows were saved, they go with them.
            for image in uploaded:
                image.storage.delete(image.name)
            raise PublishRefused(refusal)
        taken_off = [
            image_form.initial["image"].name
            for formset in formsets
            if formset.model is PostImage
            for image_form in formset.deleted_forms
            if image_form.initial.get("image")  # a row stored, not one just added
        ]
        before = form.initial.get("featured_image")  # none on a new post
        if "featured_image" in form.changed_data and before:
            taken_off.append(before.name)
        # Once the rows that name them are gone for good.
        transaction.on_commit(
            lambda: services.images_delete_unshown(names=taken_off), robust=True
        )
        # The inspections were saved after the post: index their facts too.
        index_post(form.instance)
        self.links_check_enqueue(form, formsets)
        # A worker resizes them; the pages show the originals until it has. The
        # broker down, the post is saved all the same, the failure logged, and
        # beat rings them again once it is back (tasks.ring_lost_doorbells).
        for image in uploaded:
            services.image_resize_rung(name=image.name)
            transaction.on_commit(
                lambda name=image.name: tasks.make_renditions.delay(name),
                robust=True,
            )

    def changeform_view(
        self, request: HttpRequest, object_id=None, form_url="", extra_context=None
    ):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except PublishRefused as refused:
            # Raised inside the save's transaction, which is rolled back: nothing
            # of it is kept, nor the messages it queued (an email said to be
            # going). The form is sent again with why, as the author typed it.
            request._messages = default_storage(request)
            request.publish_refused = refused.reasons
            return super().changeform_view(request, object_id, form_url, extra_context)

    @admin.action(description="Publish selected posts", permissions=["publish"])
    def publish(self, request: HttpRequest, queryset) -> None:
        selected = list(queryset.values_list("pk", flat=True))
        # All or none: refused partway, the desk answers that nothing was
        # changed, and the posts before it were published all the same.
        with transaction.atomic():
            # Read again as they are, and held until published: read before,
            # a post another editor scheduled as the checks ran went live now,
            # before its time, with their edits undone.
            drafts = Post.objects.filter(
                pk__in=selected, status__in=[Post.Status.DRAFT, Post.Status.REVIEW]
            ).locked()
            # A list has no room to confirm warnings: those posts wait for their page.
            checked = [post for post in drafts if not self.post_problems(post)]
            for post in checked:
                services.post_publish(post=post, by=request.user)
        # A draft given a time to come goes live then, not now: counting it as
        # published told the author it was on the site.
        scheduled = [post for post in checked if not post.is_published]
        # Said only of some: "Published 0 post(s)." read as a success.
        if published := len(checked) - len(scheduled):
            self.message_user(
                request,
                f"Published {counted(published, 'post', 'posts')}.",
                level=messages.SUCCESS,
            )
        if scheduled:
            self.message_user(
                request,
                f"Scheduled {counted(len(scheduled), 'post', 'posts')} for their "
                "publication time, still to come: "
                f"{', '.join(post.title for post in scheduled)}.",
                level=messages.SUCCESS,
            )
        if held := [post.title for post in drafts if post not in checked]:
            self.message_user(
                request,
                f"Not published, as the checks before publishing found problems: "
                f"{', '.join(held)}. Open each post to see them.",
                level=messages.WARNING,
            )
        self._tell_left_as_they_were(
            request,
            selected,
            drafts,
            "Not published, as they are published or scheduled already",
        )

    @admin.action(
        description="Submit selected drafts for review", permissions=["change"]
    )
    def submit_for_review(self, request: HttpRequest, queryset) -> None:
        selected = list(queryset.values_list("pk", flat=True))
        with transaction.atomic():  # all or none, as publishing
            # Read again as they are, and held until submitted: read before, a
            # post an editor published meanwhile was taken off the site by a
            # Contributor, whose role may not.
            drafts = (
                Post.objects.editable_by(request.user)
                .filter(pk__in=selected, status=Post.Status.DRAFT)
                .locked()
            )
            for post in drafts:
                services.post_submit_for_review(post=post, by=request.user)
        if drafts:
            self.message_user(
                request,
                f"Submitted {counted(len(drafts), 'post', 'posts')} for review.",
                messages.SUCCESS,
            )
        self._tell_left_as_they_were(
            request,
            selected,
            drafts,
            "Not submitted for review, as they are not drafts",
        )

    def _tell_left_as_they_were(
        self, request: HttpRequest, selected: list[int], done: list[Post], why: str
    ) -> None:
        """The posts selected that an action left as they were, named with their
        status now: chosen as drafts, they were changed meanwhile, or never were."""
        left = Post.objects.filter(pk__in=selected).exclude(
            pk__in=[post.pk for post in done]
        )
        if left:
            named = ", ".join(
                f"{post.title} ({self.publication_status(post).lower()})"
                for post in left
            )
            self.message_user(request, f"{why}: {named}.", level=messages.WARNING)

    # Roles and review. Code asks for the permission (posts.review_post,
    # publish_post, email_post), never for the group that holds it.
    ROLE_FIELDS = {
        "posts.publish_post": [
            "published_at",
            "publish_despite_warnings",
            "warnings_shown",
        ],
        "posts.email_post": ["email_subscribers", "email_format"],
    }

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).visible_to(request.user)

    def get_search_results(self, request: HttpRequest, queryset, search_term: str):
        # The related posts' field is a search box over this admin's posts: for a
        # Contributor, only their own, so it found no published post to link to,
        # which that field takes (RelatedLinkInline). It offers those too.
        searching_for = (request.GET.get("model_name"), request.GET.get("field_name"))
        match = request.resolver_match
        autocomplete = match is not None and match.url_name == "autocomplete"
        if autocomplete and searching_for == ("relatedlink", "to_post"):
            queryset = queryset | Post.objects.published()
        return super().get_search_results(request, queryset, search_term)

    def get_list_filter(self, request: HttpRequest):
        # Only a reviewer's list holds other people's posts (and may name them):
        # their authors, not every account of the desk, which is the
        # Administrator's to see.
        if request.user.has_perm("posts.review_post"):
            return [
                *super().get_list_filter(request),
                ("author", admin.RelatedOnlyFieldListFilter),
            ]
        return super().get_list_filter(request)

    def has_publish_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("posts.publish_post")

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return super().has_change_permission(request, obj) and (
            obj is None or obj.is_editable_by(request.user)
        )

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and (
            obj is None or obj.is_editable_by(request.user)
        )

    def get_fieldsets(self, request: HttpRequest, obj=None):
        """Without a role's permission its fields are not shown, and not in the
        form either, so a request that sends them changes nothing."""
        hidden = {
            field
            for permission, fields in self.ROLE_FIELDS.items()
            if not request.user.has_perm(permission)
            for field in fields
        }
        fieldsets = [
            (
                name,
                {
                    **options,
                    "fields": [f for f in options["fields"] if f not in hidden],
                },
            )
            for name, options in super().get_fieldsets(request, obj)
        ]
        fieldsets = [
            (name, options) for name, options in fieldsets if options["fields"]
        ]
        if obj is not None:
            fieldsets.append(("History", {"fields": ["history"]}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return [*super().get_readonly_fields(request, obj), "history"]

    def formfield_for_choice_field(self, db_field, request: HttpRequest, **kwargs):
        if db_field.name == "status" and not self.has_publish_permission(request):
            kwargs["choices"] = [
                (status.value, status.label)
                for status in (Post.Status.DRAFT, Post.Status.REVIEW)
            ]
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    def changelist_view(self, request: HttpRequest, extra_context=None):
        if request.method == "GET" and request.user.has_perm("posts.review_post"):
            waiting = Post.objects.in_review().count()
            if waiting:
                self.message_user(
                    request,
                    format_html(
                        '{} for review: <a href="?status__exact={}">show them</a>.',
                        counted(waiting, "post waits", "posts wait"),
                        Post.Status.REVIEW,
                    ),
                    messages.INFO,
                )
        return super().changelist_view(request, extra_context)

    @admin.display(description="status", ordering="status")
    def publication_status(self, post: Post) -> str:
        # "Published" for a time to come read as on the site, where it was a 404.
        if post.status == Post.Status.PUBLISHED and not post.is_published:
            return "Scheduled"
        return post.get_status_display()

    @admin.display(description="History")
    def history(self, post: Post) -> str:
        events = post.events.select_related("by")
        if not events:
            return "Nothing yet: the post has not been submitted or published."
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li>{} by {}, {}{}</li>",
                (
                    (
                        event.get_kind_display(),
                        event.by or _nobody_named(event),
                        _when(event.at),
                        f" (for {_when(event.for_time)})" if event.for_time else "",
                    )
                    for event in events
                ),
            ),
        )

    @admin.display(description="Suggestions")
    def related_suggestions(self, post: Post) -> str:
        if post.pk is None:
            return "Save the post to see suggestions."
        suggestions = related.suggestions(post, exclude_linked=True)
        if not suggestions:
            return "No suggestions: nothing published shares enough with this post."
        url = reverse("admin:posts_post_add_related", args=[post.pk])
        # Buttons of the change form posting to the add view: no JavaScript, and the
        # form's CSRF token goes with them. Unsaved edits on this page are not kept.
        return format_html(
            "<p>Adding one saves nothing else on this page.</p><ul>{}</ul>",
            format_html_join(
                "",
                '<li><button type="submit" formaction="{}" formnovalidate '
                'name="to_post" value="{}">Add</button> {} <small>({})</small></li>',
                (
                    (url, s.post.pk, s.post.title, ", ".join(s.reasons))
                    for s in suggestions
                ),
            ),
        )

    # The editor and the checks before publishing ---------------------------------

    def get_form(self, request: HttpRequest, obj: Post | None = None, **kwargs):
        editor = MarkdownEditor(
            preview_url=reverse("admin:posts_post_preview"),
            post_images=obj.images.all() if obj is not None else (),
        )
        kwargs["widgets"] = {"body": editor, **kwargs.get("widgets", {})}
        form = super().get_form(request, obj, **kwargs)
        form.post_problems = self.post_problems
        form.refused = getattr(request, "publish_refused", [])
        return form

    def post_problems(self, post: Post) -> list[checks.Problem]:
        """The checks before publishing; the newsletter's post admin adds its own."""
        return checks.post_problems(post)

    @admin.display(description="Problems")
    def publishing_checks(self, post: Post) -> str:
        if post.pk is None:
            return "Save the post to run the checks."
        problems = self.post_problems(post)
        return render_to_string(
            "admin/posts/publishing_checks.html",
            {
                "problems": problems,
                "links_unchecked": len(links.unchecked(post)),
                # Rung and not yet run; else none is coming (given up by beat, or
                # never rung), and only saving the post rings it.
                "check_coming": post.links_check_rung_at is not None,
            },
        )

    def links_check_enqueue(self, form, formsets) -> None:
        """Check the links again when the body or an inspection's changed, or
        any is unchecked (a check beat gave up: the checks say to save the post)."""
        changed = "body" in form.changed_data or any(
            formset.model is Inspection and formset.has_changed()
            for formset in formsets
        )
        if changed or links.unchecked(form.instance):
            post_id = form.instance.pk
            # robust: the broker (Redis) down, the post is saved all the same, the
            # failure logged, and beat rings the check again once it is back.
            services.post_links_check_rung(post_id=post_id)
            transaction.on_commit(
                lambda: tasks.check_post_links.delay(post_id), robust=True
            )

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """The body as readers will see it, rendered by the site's own renderer."""
        if not (
            self.has_add_permission(request) or self.has_change_permission(request)
        ):
            raise PermissionDenied
        body = request.POST.get("body", "")
        # The slug as the form has it now, which saving gives the post: a link to
        # its own address goes live with it, and the checks leave it alone.
        post = Post(
            body=body,
            body_html=render_markdown(body),
            slug=request.POST.get("slug", ""),
        )
        # The checks that read the text alone, in the words saving shows them in.
        problems = checks.post_problems(post, checks=checks.BODY_CHECKS)
        return JsonResponse(
            {
                "html": post.body_html,
                # The words readers will see, as the post's page counts them.
                "words": word_count(plain_text(post.body_html)),
                "minutes": post.reading_minutes,
                "problems": (
                    render_to_string(
                        "admin/posts/preview_problems.html", {"problems": problems}
                    )
                    if problems
                    else ""
                ),
            }
        )

    def get_urls(self):
        return [
            path(
                "preview/",
                self.admin_site.admin_view(require_POST(self.preview_view)),
                name="posts_post_preview",
            ),
            path(
                "<int:post_id>/add-related/",
                self.admin_site.admin_view(self.add_related_view),
                name="posts_post_add_related",
            ),
            *super().get_urls(),
        ]

    def add_related_view(self, request: HttpRequest, post_id: int):
        # Only a post the user may see exists for them; one they may see but
        # not change is refused, as its change form refuses them.
        post = get_object_or_404(self.get_queryset(request), pk=post_id)
        change_url = reverse("admin:posts_post_change", args=[post.pk])
        if request.method != "POST":
            return HttpResponseRedirect(change_url)
        if not self.has_change_permission(request, post):
            raise PermissionDenied
        # The id as the page writes it: int() would also read " 7", "+7" or other
        # scripts' digits, and link a post the page never offered.
        to_post_id = row_id_in(request.POST.get("to_post", ""))
        try:
            if to_post_id is None:
                raise Post.DoesNotExist
            link, created = related.related_link_add(
                from_post=post, to_post_id=to_post_id
            )
        except Post.DoesNotExist:
            self.message_user(request, "That post cannot be linked.", messages.ERROR)
        else:
            linked_as = link.get_type_display().lower()
            if created:
                said = f"Linked “{link.to_post}” as {linked_as}."
                level = messages.SUCCESS
            else:  # a page opened before the first "Add", or a double click
                said = (
                    f"“{link.to_post}” was linked already, as {linked_as}: "
                    "nothing changed."
                )
                level = messages.INFO
            self.message_user(request, said, level)
        return HttpResponseRedirect(change_url)


def _nobody_named(event: PostEvent) -> str:
    """Who took a step no account is named for: the site only ever publishes (a
    schedule's time come); any other step was someone's, whose account is gone.
    (A publication by an account since deleted reads as the site's: the two are
    stored alike.)"""
    if event.kind == PostEvent.Kind.PUBLISHED:
        return "the site"
    return "an account since deleted"


def _when(moment) -> str:
    return date_format(localtime(moment), "DATETIME_FORMAT")


def _sentences(words: list[str]) -> str:
    """One message of sentences, some of them HTML (a link), escaping the rest."""
    return format_html_join(" ", "{}", ((sentence,) for sentence in words))

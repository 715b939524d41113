import csv
from datetime import datetime

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from posts.validators import reject_control_characters

from ..charts import Chart, bar_chart
from ..engagement import (
    OPENS_NOT_COUNTED,
    is_click_redirect,
    is_web_address,
    link_fix,
)
from ..models import Link, PostReport
from ..reports import (
    CHART_HOURS,
    ENGAGEMENT_FIGURES,
    REPORT_FIGURES,
    SMALLEST_GROUP,
    post_report,
    post_report_rows,
)
from .spreadsheets import BYTE_ORDER_MARK, csv_cell

# Fixing where a sent link goes changes what the post's mailings do: the
# permission Editors hold to pause or cancel them.
FIX_LINKS_PERMISSION = "newsletter.change_mailing"


class LinkFixForm(forms.Form):
    target = forms.CharField(
        label="Where it should go",
        max_length=2000,
        widget=forms.URLInput(attrs={"size": 80}),
        error_messages={"required": "Enter the address the link should go to."},
    )

    def __init__(self, *args, current: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.current = current

    def clean_target(self) -> str:
        target = self.cleaned_data["target"]
        reject_control_characters(target)
        if not is_web_address(target):
            raise ValidationError(
                "Enter the whole web address, starting with https:// or http://."
            )
        if is_click_redirect(target):
            # The redirect would send readers round in a circle.
            raise ValidationError(
                "That address is a redirect of the emails themselves: enter the "
                "page the link should open."
            )
        if target == self.current:
            raise ValidationError("The link already goes there.")
        return target


@admin.register(PostReport)
class PostReportAdmin(admin.ModelAdmin):
    """Each announced post's report: recipients, bounces, complaints, and opens
    and clicks by people and machines (reports.post_report). Read only."""

    list_display = ["title", "announced_at", "report"]
    search_fields = ["title", "slug"]
    ordering = ["-announced_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(announced_at__isnull=False)

    @admin.display(description="Report")
    def report(self, post: PostReport) -> str:
        return format_html(
            '<a href="{}">Report</a> · <a href="{}">CSV</a>',
            reverse("admin:newsletter_postreport_change", args=[post.pk]),
            reverse("admin:newsletter_postreport_csv", args=[post.pk]),
        )

    def get_urls(self):
        return [
            path(
                "<path:object_id>/csv/",
                self.admin_site.admin_view(self.csv_view),
                name="newsletter_postreport_csv",
            ),
            path(
                "<path:object_id>/link/",
                self.admin_site.admin_view(self.link_fix_view),
                name="newsletter_postreport_link_fix",
            ),
            *super().get_urls(),
        ]

    def _report(self, request: HttpRequest, object_id: str) -> dict:
        if not self.has_view_permission(request):
            raise PermissionDenied
        post = self.get_object(request, object_id)
        if post is None:
            raise Http404("No such post.")
        return post_report(post)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        report = self._report(request, object_id)
        return TemplateResponse(
            request,
            "admin/newsletter/report.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": f"Report: {report['title']}",
                "report": report,
                "figures": [(label, report[key]) for key, label in REPORT_FIGURES],
                "engagement": [
                    (label, report[key]) for key, label in ENGAGEMENT_FIGURES
                ],
                "opens_not_counted": OPENS_NOT_COUNTED,
                "chart": _first_hours_chart(report["first_hours"]),
                "smallest_group": SMALLEST_GROUP,
                "csv_url": reverse("admin:newsletter_postreport_csv", args=[object_id]),
                "link_fix_url": reverse(
                    "admin:newsletter_postreport_link_fix", args=[object_id]
                ),
                "may_fix_links": request.user.has_perm(FIX_LINKS_PERMISSION),
            },
        )

    def link_fix_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Where a link of the post's emails (?url=, as the emails have it) goes
        from now on, in every email that carried the post."""
        if not (
            self.has_view_permission(request)
            and request.user.has_perm(FIX_LINKS_PERMISSION)
        ):
            raise PermissionDenied
        post = self.get_object(request, unquote(object_id))
        url = request.GET.get("url", "")
        link = (
            Link.objects.of_post(post).filter(url=url, hidden=False).first()
            if post is not None
            else None
        )
        if link is None:
            raise Http404("No link of this post's emails has that address.")
        posted = request.POST if request.method == "POST" else None
        form = LinkFixForm(posted, current=link.target, initial={"target": link.target})
        if form.is_valid():
            target = form.cleaned_data["target"]
            fixed = link_fix(post=post, url=url, target=target, user=request.user)
            emails = "email" if fixed == 1 else f"{fixed} emails"
            self.message_user(
                request,
                f"Every later click on this link, in the {emails} that carried "
                f"it, goes to {target}.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(
                reverse("admin:newsletter_postreport_change", args=[post.pk])
            )
        return TemplateResponse(
            request,
            "admin/newsletter/link_fix.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Fix where this link goes",
                "post": post,
                "link": link,
                "form": form,
            },
        )

    def csv_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        report = self._report(request, object_id)
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="report-{report["post"]}.csv"'
        )
        response.write(BYTE_ORDER_MARK)  # Excel reads UTF-8 only after one
        csv.writer(response).writerows(
            [csv_cell(value) for value in row] for row in post_report_rows(report)
        )
        return response

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def _first_hours_chart(first_hours: dict) -> Chart | None:
    """Opens and clicks, people and machines, over the post's first hours."""
    if first_hours["from"] is None:
        return None
    start = timezone.localtime(datetime.fromisoformat(first_hours["from"]))
    return bar_chart(
        title=f"Opens and clicks in the first {CHART_HOURS} hours, "
        f"from {start:%H:%M on %-d %B %Y}",
        series=[
            "Opens by people",
            "Opens by machines",
            "Clicks by people",
            "Clicks by machines",
        ],
        rows=[
            (
                bar["hours"].replace("-", "\u2011") + "\u00a0h",  # kept on one line
                [
                    bar[kind][who]
                    for kind in ("opens", "clicks")
                    for who in ("people", "machines")
                ],
            )
            for bar in first_hours["bars"]
        ],
    )

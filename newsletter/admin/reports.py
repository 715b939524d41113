import csv
from datetime import datetime

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from ..charts import Chart, bar_chart
from ..models import PostReport
from ..reports import (
    CHART_HOURS,
    REPORT_FIGURES,
    SMALLEST_GROUP,
    post_report,
    post_report_rows,
)


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
                "chart": _first_hours_chart(report["first_hours"]),
                "smallest_group": SMALLEST_GROUP,
                "csv_url": reverse("admin:newsletter_postreport_csv", args=[object_id]),
            },
        )

    def csv_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        report = self._report(request, object_id)
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="report-{report["post"]}.csv"'
        )
        csv.writer(response).writerows(post_report_rows(report))
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
                f"{bar['hours']}\u00a0h",
                [
                    bar[kind][who]
                    for kind in ("opens", "clicks")
                    for who in ("people", "machines")
                ],
            )
            for bar in first_hours["bars"]
        ],
    )

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from composer import endpoint_drivers
from composer.drivers import registry
from pools.models import HypervisorEndpoint
from portal import endpoint_forms, tokens
from portal.models import ApiToken


@admin.register(HypervisorEndpoint)
class EndpointAdmin(admin.ModelAdmin):
    """An endpoint's columns and its driver's settings, in one form built from the driver's
    settings class (portal/endpoint_forms.py)."""

    list_display = ["name", "driver_label", "where", "max_provisioning", "max_maintenance"]
    # Written by the inventory sync (composer/inventory.py), not by hand.
    readonly_fields = [
        "synced_at",
        "sync_error",
        "orphans",
        "agent_token_prefix",
        "agent_token_created_at",
    ]

    def chosen_driver(self, request, obj=None) -> str:
        """The driver whose settings the page shows: the one posted, else the one asked for
        (?driver=), else the endpoint's, else the first registered."""
        return (
            request.POST.get("driver")
            or request.GET.get("driver")
            or (obj.driver if obj is not None else registry.choices()[0][0])
        )

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = endpoint_forms.endpoint_form(self.chosen_driver(request, obj))
        kwargs["fields"] = endpoint_forms.COLUMNS + kwargs["form"].settings_names()
        return super().get_form(request, obj, change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        chosen = self.chosen_driver(request, obj)
        sets = endpoint_forms.fieldsets(chosen)
        others = [(name, label) for name, label in registry.choices() if name != chosen]
        if obj is None and others:
            sets[0][1]["description"] = format_html(
                "Settings shown for this driver. For another: {}.",
                format_html_join(", ", '<a href="?driver={}">{}</a>', others),
            )
        sets.append(("Last sync", {"fields": ["synced_at", "sync_error", "orphans"]}))
        if obj is not None:
            sets.append(
                (
                    "Desktop agents",
                    {
                        "fields": ["agent_token_prefix", "agent_token_created_at"],
                        "description": format_html(
                            "The token the desktops' agents report sessions with (shown once "
                            'when made). Make or replace it on the <a href="{}#endpoint-{}">'
                            "Hypervisors page</a>.",
                            reverse("pools:hypervisors"),
                            obj.pk,
                        ),
                    },
                )
            )
        return sets

    @admin.display(description="driver")
    def driver_label(self, obj):
        return endpoint_drivers.describe(obj).label

    @admin.display(description="where")
    def where(self, obj):
        return endpoint_drivers.describe(obj).summary


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Every user's tokens, read-only: revoking (audited, portal/tokens.py) is the one change.
    A token is made by its user (its secret is shown to them once) and never deleted here,
    so that its history stays."""

    list_display = ["name", "user", "prefix", "created_at", "expires_at", "last_used_at", "state"]
    list_filter = ["revoked_at", "expires_at"]
    search_fields = ["name", "prefix", "user__username"]
    readonly_fields = [
        "user",
        "name",
        "prefix",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]
    fields = readonly_fields
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="status")
    def state(self, obj):
        return tokens.status(obj)

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request, queryset):
        revoked = sum(tokens.revoke(request.user, token, request=request) for token in queryset)
        self.message_user(request, f"{revoked} token(s) revoked.", messages.SUCCESS)

from __future__ import annotations

from django import forms

from composer import naming
from composer.capacity import DoesNotFit
from composer.services import PoolSpec, place_new_desktops
from pools import usage
from pools.models import MAX_ID, Datastore, ImageVersion, Overcommit, Pool

MAX_POOL_SIZE = 5000


class DatastoreChoiceField(forms.ModelMultipleChoiceField):
    def clean(self, value):
        # Django checks each value with pk=, which takes any number, then all of them with
        # pk__in=, which sends a number beyond any id to the database (SQLite cannot bind
        # it): refuse such a number first, with the field's own message.
        for pk in value if isinstance(value, list | tuple) else ():
            try:
                beyond = abs(int(pk)) > MAX_ID
            except (TypeError, ValueError):
                continue  # not a number: the field's own check says so
            if beyond:
                raise forms.ValidationError(
                    self.error_messages["invalid_pk_value"],
                    code="invalid_pk_value",
                    params={"pk": pk},
                )
        return super().clean(value)

    def label_from_instance(self, ds):
        gib = 1024
        return (
            f"{ds.name}: {ds.free_mb / gib:,.0f} GiB free of {ds.capacity_mb / gib:,.0f} GiB "
            f"({ds.endpoint})"
        )


class PoolForm(forms.Form):
    name = forms.CharField(max_length=64)
    naming_pattern = forms.CharField(
        max_length=64,
        initial="VDI-{n:fixed=3}",
        help_text="{n} or {n:fixed=N} is replaced by the desktop's number; names are at most "
        "15 characters.",
    )
    size = forms.IntegerField(min_value=1, max_value=MAX_POOL_SIZE, initial=10)
    image_version = forms.ModelChoiceField(
        queryset=ImageVersion.objects.select_related("image"), empty_label=None
    )
    datastores = DatastoreChoiceField(
        queryset=Datastore.objects.filter(gone=False).select_related("endpoint"),
        widget=forms.CheckboxSelectMultiple,
    )
    overcommit = forms.TypedChoiceField(
        choices=Overcommit.choices,
        coerce=int,
        initial=Overcommit.CONSERVATIVE,
        label="Storage over-commit",
    )
    power_policy = forms.ChoiceField(
        choices=Pool.PowerPolicy.choices, initial=Pool.PowerPolicy.ALWAYS_ON
    )
    persistent_disk_gb = forms.IntegerField(
        min_value=0,
        max_value=2048,
        initial=0,
        label="Persistent disk (GiB)",
        help_text="0 for no persistent disk.",
    )
    max_concurrent_provisioning = forms.IntegerField(min_value=1, max_value=64, initial=8)
    domain = forms.CharField(max_length=255, required=False)
    # Shown only when the datastores chosen would pass the dashboard's warning level.
    accept_warnings = forms.BooleanField(
        required=False,
        label="Create it anyway",
        widget=forms.HiddenInput,
        help_text="The datastores above would be over their warning level.",
    )

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if Pool.objects.filter(name__iexact=name).exists():
            raise forms.ValidationError("A pool with this name already exists.")
        return name

    def clean_naming_pattern(self):
        pattern = self.cleaned_data["naming_pattern"].strip()
        try:
            naming.parse(pattern)
        except naming.NamingError as exc:
            raise forms.ValidationError(str(exc)) from None
        return pattern

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        version, datastores = data["image_version"], list(data["datastores"])
        others = [ds.name for ds in datastores if ds.endpoint_id != version.image.endpoint_id]
        if others:
            self.add_error(
                "datastores",
                f"{', '.join(others)} not on the image's hypervisor ({version.image.endpoint}).",
            )
            return data
        self.spec = self.to_spec()
        try:
            placement = place_new_desktops(self.spec)
        except DoesNotFit as exc:
            self.add_error("datastores", str(exc))
        except naming.NamingError as exc:
            self.add_error("naming_pattern", str(exc))
        else:
            warnings = usage.overcommit_warnings(placement, datastores, version, data["overcommit"])
            if warnings and not data.get("accept_warnings"):
                # Not refused: said, and created once the administrator confirms.
                for warning in warnings:
                    self.add_error("datastores", warning)
                self.fields["accept_warnings"].widget = forms.CheckboxInput()
        return data

    def to_spec(self) -> PoolSpec:
        data = self.cleaned_data
        return PoolSpec(
            name=data["name"],
            naming_pattern=data["naming_pattern"],
            size=data["size"],
            datastores=list(data["datastores"]),
            image_version=data["image_version"],
            overcommit=data["overcommit"],
            power_policy=data["power_policy"],
            persistent_disk_mb=data["persistent_disk_gb"] * 1024,
            max_concurrent_provisioning=data["max_concurrent_provisioning"],
            domain=data["domain"],
        )


class PoolDatastoresForm(forms.Form):
    """Which of its endpoint's datastores a pool uses, and at what over-commit level.

    Deselecting a datastore keeps its row (selected=False) so a rebalance knows to vacate it;
    selecting one the pool never used adds a row.
    """

    def __init__(self, *args, pool: Pool, **kwargs):
        super().__init__(*args, **kwargs)
        self.pool = pool
        self.links = {link.datastore_id: link for link in pool.pool_datastores.all()}
        # A datastore the hypervisor no longer lists cannot be chosen (plans treat it as
        # deselected).
        self.datastores = list(Datastore.objects.filter(endpoint_id=pool.endpoint_id, gone=False))
        for ds in self.datastores:
            link = self.links.get(ds.pk)
            self.fields[f"selected_{ds.pk}"] = forms.BooleanField(
                required=False, initial=bool(link and link.selected), label=f"Use {ds.name}"
            )
            self.fields[f"overcommit_{ds.pk}"] = forms.TypedChoiceField(
                choices=Overcommit.choices,
                coerce=int,
                initial=link.overcommit if link else ds.overcommit,
                label=f"Over-commit on {ds.name}",
                widget=forms.Select(attrs={"aria-label": f"Over-commit on {ds.name}"}),
            )

    def rows(self):
        """(datastore, its link or None, selected field, over-commit field) for the template."""
        return [
            (ds, self.links.get(ds.pk), self[f"selected_{ds.pk}"], self[f"overcommit_{ds.pk}"])
            for ds in self.datastores
        ]

    def clean(self):
        data = super().clean()
        if not any(data.get(f"selected_{ds.pk}") for ds in self.datastores):
            raise forms.ValidationError("Select at least one datastore for the pool.")
        return data

    def changes(self) -> list[tuple[Datastore, bool, int]]:
        """(datastore, selected, over-commit) for each datastore whose row must change or be
        created; a datastore the pool never used and that stays unselected needs no row."""
        out = []
        for ds in self.datastores:
            selected = self.cleaned_data[f"selected_{ds.pk}"]
            overcommit = self.cleaned_data[f"overcommit_{ds.pk}"]
            link = self.links.get(ds.pk)
            if link is None and not selected:
                continue
            if link is not None and (link.selected, link.overcommit) == (selected, overcommit):
                continue
            out.append((ds, selected, overcommit))
        return out


class PoolResizeForm(forms.Form):
    """The pool's new size. Sent first without `confirm`, the page shows what would happen
    (services.preview_resize); sent again with it, the pool is resized."""

    size = forms.IntegerField(min_value=1, max_value=MAX_POOL_SIZE, label="New size")
    confirm = forms.BooleanField(required=False, widget=forms.HiddenInput)

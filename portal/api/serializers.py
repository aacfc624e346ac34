"""How inventory objects look in the API (read side)."""

from __future__ import annotations

from rest_framework import serializers

from pools.models import Pool


class PoolSerializer(serializers.ModelSerializer):
    endpoint = serializers.SlugRelatedField(slug_field="name", read_only=True)
    image_version = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = Pool
        fields = [
            "id",
            "name",
            "description",
            "endpoint",
            "naming_pattern",
            "size",
            "spares",
            "image_version",
            "domain",
            "persistent_disk_mb",
            "assignment",
            "power_policy",
            "max_concurrent_provisioning",
            "max_concurrent_maintenance",
            "min_ready_desktops",
            "created_at",
        ]
        read_only_fields = fields

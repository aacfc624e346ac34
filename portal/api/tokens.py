"""Personal API tokens over the API: list and make your own, revoke one (administrators: any).
The same logic and audit events as the tokens page (portal/tokens.py)."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from portal import tokens
from portal.models import ApiToken
from portal.permissions import deny

NAME_MAX = ApiToken._meta.get_field("name").max_length


class TokenSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    starts_with = serializers.SerializerMethodField(help_text="The secret's first characters.")
    status = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "user",
            "starts_with",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "status",
        ]
        read_only_fields = fields

    def get_starts_with(self, token) -> str:
        return f"{ApiToken.PREFIX}{token.prefix}"

    @extend_schema_field(serializers.ChoiceField(choices=["active", "expired", "revoked"]))
    def get_status(self, token) -> str:
        return tokens.status(token)


class NewTokenSerializer(TokenSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="The token itself: shown in this answer only, never again."
    )

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class TokenRequestSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=NAME_MAX, validators=[tokens.validate_name])
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Empty: it works until revoked."
    )

    def validate_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Give a moment in the future.")
        return value

    def validate(self, data):
        # A token may make another, but not one that outlives it: a leaked short-lived
        # token must not be turned into a permanent one.
        maker = self.context["request"].auth
        if isinstance(maker, ApiToken) and maker.expires_at is not None:
            wanted = data.get("expires_at")
            if wanted is None:
                data["expires_at"] = maker.expires_at
            elif wanted > maker.expires_at:
                raise serializers.ValidationError(
                    {
                        "expires_at": "A token cannot make one that outlives it: at the latest "
                        f"{maker.expires_at.isoformat()}."
                    }
                )
        return data


ALL = OpenApiParameter(
    "all",
    OpenApiTypes.BOOL,
    description="Every user's tokens, not only yours (administrators).",
)


class TokenList(generics.ListCreateAPIView):
    """Your tokens, newest first (with all=true, every user's: administrators)."""

    serializer_class = TokenSerializer
    ordering = "-id"

    def get_queryset(self):
        if self.request.method == "GET" and self._wants_all():
            if not tokens.can_manage_all(self.request.user):
                raise deny(self.request._request, "manage_api_tokens")
            return tokens.visible_to(self.request.user)
        return ApiToken.objects.select_related("user").filter(user=self.request.user)

    def _wants_all(self) -> bool:
        raw = self.request.query_params.get("all")
        if raw is None:
            return False
        field = serializers.BooleanField()
        try:
            return field.to_internal_value(raw)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({"all": exc.detail}) from None

    @extend_schema(parameters=[ALL])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=TokenRequestSerializer,
        responses={201: NewTokenSerializer},
        description="A new token of your own. Its secret is in this answer only: keep it.",
    )
    def post(self, request, *args, **kwargs):
        given = TokenRequestSerializer(data=request.data, context={"request": request})
        given.is_valid(raise_exception=True)
        token, secret = tokens.issue(
            request.user,
            given.validated_data["name"],
            given.validated_data.get("expires_at"),
            request=request._request,
        )
        token.secret = secret
        return Response(
            NewTokenSerializer(token).data,
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )


class TokenDetail(generics.RetrieveDestroyAPIView):
    """One of your tokens (administrators: anyone's). DELETE revokes it at once; the token
    stays listed, revoked. Someone else's token is 404."""

    serializer_class = TokenSerializer

    def get_object(self):
        return tokens.get_for(self.request.user, self.kwargs["pk"])

    @extend_schema(responses={204: None})
    def delete(self, request, *args, **kwargs):
        tokens.revoke(request.user, self.get_object(), request=request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)

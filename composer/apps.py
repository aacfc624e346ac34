from django.apps import AppConfig


class ComposerConfig(AppConfig):
    name = "composer"
    verbose_name = "Composer"

    def ready(self):
        from audit import labels as audit_labels
        from composer import kinds

        # Each kind's module registers it (composer/kinds/__init__.py), as Django finds each
        # app's admin module; the audit log names their events from the registry.
        kinds.discover()
        audit_labels.name_actions({k.name: k.audit_label or k.label for k in kinds.all_kinds()})

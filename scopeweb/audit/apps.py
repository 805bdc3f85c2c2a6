from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "scopeweb.audit"
    label = "audit"
    verbose_name = "Audit log"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

        from scopeweb.audit import signals

        user_logged_in.connect(signals.record_login, dispatch_uid="audit_login")
        user_login_failed.connect(signals.record_login_failed, dispatch_uid="audit_login_failed")
        user_logged_out.connect(signals.record_logout, dispatch_uid="audit_logout")
        # Imported after the connections above: axes' own receivers of user_login_failed are
        # connected when its signals module loads, and a failure is counted here before axes
        # decides on a lockout, so the lockout's event includes the failure that caused it.
        from axes.signals import user_locked_out

        user_locked_out.connect(signals.record_lockout, dispatch_uid="audit_lockout")

"""The model the django-import-export peer imports into: the Portal Access sheet's columns."""

from __future__ import annotations

from django.db import models

ROLE_CHOICES = [("Admin", "Admin"), ("Member", "Member")]


class Member(models.Model):
    """A portal member: validated by Django's field validators (full_clean) on import."""

    name = models.CharField(max_length=100)
    email = models.EmailField(max_length=254, unique=True)
    role = models.CharField(max_length=20, choices=ROLE_CHOICES)
    team = models.CharField(max_length=100, blank=True)

    class Meta:
        app_label = "benchapp"

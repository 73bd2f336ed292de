"""A throwaway Django app for the django-import-export peer: one Member model."""

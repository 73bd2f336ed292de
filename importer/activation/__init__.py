"""Activation: tokens, composing and sending the emails, activating."""

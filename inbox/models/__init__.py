"""The data model: one module per table family, every table re-exported here."""

from .accounts import Account, Membership, StaffUser
from .comments import Automation, AutomationRun, Comment
from .catalog import AssignmentEvent, Post, PostProduct, Product
from .conversations import Conversation
from .identities import Identity
from .insights import ConversationFact, InsightSettings, InsightSlot, SaleOutcome
from .messages import Attachment, Message, Reaction
from .operations import Erasure, JobRun, PeriodicTask, WebhookDelivery
from .team import ConversationEvent, ConversationLabel, Invite, Label, Note, NoteMention, SavedReply
from .types import ms_to_datetime, utcnow

__all__ = [
    "Account", "AssignmentEvent", "ConversationEvent", "ConversationLabel", "Invite", "Label", "Note", "NoteMention",
    "SavedReply", "Attachment", "Automation", "AutomationRun", "Comment", "Conversation", "ConversationFact", "Erasure",
    "Identity", "InsightSettings", "InsightSlot", "JobRun", "SaleOutcome",
    "Membership", "Message", "PeriodicTask", "Post", "PostProduct", "Product", "Reaction", "StaffUser",
    "WebhookDelivery", "ms_to_datetime", "utcnow",
]

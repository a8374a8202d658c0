"""Closing the loop with the citizen: a reporter who left a contact is told, in Vietnamese, when
their report is received, given to a unit and resolved, and can reopen it for a while after.
The contact is kept encrypted only that long (`contacts`), sent through one pluggable channel
(`channels`: e-mail, SMS gateway, Zalo ZNS), by the alerts worker (`loop`)."""

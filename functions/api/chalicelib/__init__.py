"""The API's own views: what a route is asked (query.py), its signed page tokens
(pagetoken.py), how items are dressed for clients (views.py).

The index and the settings are the data layer the workers share: golive_data/, at the
top of the repository. Nothing here may import numpy or astropy: the API package must
stay small.
"""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .models import Greeting


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "hello/index.html")


def db(request: HttpRequest) -> HttpResponse:
    """Write a row and read them all: the page works only once `release:` has migrated."""
    Greeting.objects.create()
    greetings = Greeting.objects.order_by("-when")
    return render(request, "hello/db.html", {"greetings": greetings})

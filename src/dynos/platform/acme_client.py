"""Certificates from an ACME directory (RFC 8555; Let's Encrypt's by default), with the `acme`
library that certbot uses: one account per server, HTTP-01 challenges answered by the router.

``AcmeClient.obtain(names)`` does an order from start to finish: the account (registered on
first use, its key ``<home>/tls/acme/account.key``, 0600, found again by that key later), a
new order for ``names``, one HTTP-01 challenge per name put up on the ``ChallengeBoard`` (the
router answers them, in every router process) and answered, the order finalized with a CSR
of a fresh P-256 key, the certificate chain fetched, the challenges taken down. The `acme`
library speaks HTTP with blocking calls (requests): they run in a worker thread, the board on
the event loop. Whatever goes wrong becomes ``AcmeFailed``, whose message says why in one
line (the ACME server's own words where it gave some) and ends up as the app's
``acm_status_reason``.
"""

from __future__ import annotations

import asyncio
import datetime
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, Protocol, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dynos.errors import PlatformError

# acme, josepy and requests (0.15 s of imports) are loaded by the first order, in its worker
# thread: most servers never order a certificate, and every one starts with an AcmeClient.
if TYPE_CHECKING:
    from acme import client, messages

USER_AGENT = "dynos"
P = ParamSpec("P")
T = TypeVar("T")

ORDER_TIMEOUT = 90.0  # seconds an order may take, challenges validated and certificate issued


class AcmeFailed(PlatformError):
    """An ACME order failed: the message is the reason shown as ``acm_status_reason``."""


class ChallengeBoard(Protocol):
    """Where HTTP-01 answers go up and come down (router/challenges.py's ``ChallengeBoard``)."""

    async def publish(self, token: str, names: Iterable[str], key_authorization: str) -> None: ...

    async def withdraw(self, tokens: Iterable[str]) -> None: ...


@dataclass(frozen=True)
class Issued:
    """A certificate obtained: its chain and key (PEM), the names and dates it holds."""

    cert_pem: bytes  # the leaf first, then the intermediates
    key_pem: bytes
    names: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime


@dataclass(frozen=True)
class _Order:
    """An order with its challenges to put up: (name, token, key authorization, body)."""

    resource: messages.OrderResource
    key_pem: bytes
    challenges: tuple[tuple[str, str, str, messages.ChallengeBody], ...]


class AcmeClient:
    """ACME for one server: ``directory`` is the directory's URL; ``ca_bundle`` the CA file
    that its HTTPS is checked against (None: the system's, as for Let's Encrypt; tests pass
    pebble's); ``email`` the account's contact, if any."""

    def __init__(
        self,
        directory: str,
        account_dir: Path,
        board: ChallengeBoard,
        *,
        ca_bundle: Path | None = None,
        email: str | None = None,
    ) -> None:
        self.directory = directory
        self._account_dir = account_dir
        self._board = board
        self._ca_bundle = ca_bundle
        self._email = email
        self._client: client.ClientV2 | None = None
        self._lock = asyncio.Lock()  # one order at a time: the account and its nonces

    async def obtain(self, names: Iterable[str]) -> Issued:
        """A certificate for ``names``; raises ``AcmeFailed`` saying why not."""
        wanted = tuple(sorted({name.lower() for name in names}))
        async with self._lock:
            order = await asyncio.to_thread(self._call, self._order, wanted)
            tokens = [token for _, token, _, _ in order.challenges]
            try:
                for name, token, answer, _ in order.challenges:
                    await self._board.publish(token, [name], answer)
                return await asyncio.to_thread(self._call, self._finish, order, wanted)
            finally:
                await self._board.withdraw(tokens)

    # ---- in the worker thread ---------------------------------------------------------------

    def _call(self, step: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``step``, its failures turned into AcmeFailed (the client is made anew after one:
        a directory that moved or an account that went away is found again)."""
        try:
            return step(*args, **kwargs)
        except AcmeFailed:
            self._client = None
            raise
        except Exception as exc:
            self._client = None
            raise AcmeFailed(_reason(exc, self.directory)) from exc

    def _acme(self) -> client.ClientV2:
        from acme import client, errors, messages
        from josepy.jwk import JWKRSA

        if self._client is not None:
            return self._client
        key = JWKRSA(key=self._account_key())
        verify: bool | str = str(self._ca_bundle) if self._ca_bundle else True
        net = client.ClientNetwork(key, user_agent=USER_AGENT, verify_ssl=verify)  # type: ignore[arg-type]
        acme = client.ClientV2(client.ClientV2.get_directory(self.directory, net), net)
        registration = messages.NewRegistration.from_data(
            email=self._email, terms_of_service_agreed=True
        )
        try:
            acme.new_account(registration)
        except errors.ConflictError as exists:  # this key's account: found by its URL
            known = messages.RegistrationResource(uri=exists.location, body=messages.Registration())
            acme.query_registration(known)
        self._client = acme
        return acme

    def _account_key(self) -> rsa.RSAPrivateKey:
        """The account's key, made once: readable by the server only."""
        path = self._account_dir / "account.key"
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            self._account_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            partial = path.with_suffix(".partial")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
            partial.replace(path)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise AcmeFailed(f"{path} is not an RSA key: move it aside to make a new account.")
        return key

    def _order(self, names: tuple[str, ...]) -> _Order:
        from acme import challenges, crypto_util, messages

        acme = self._acme()
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        order = acme.new_order(crypto_util.make_csr(key_pem, list(names)))
        found = []
        for authorization in order.authorizations:
            if authorization.body.status == messages.STATUS_VALID:
                continue  # proven by an earlier order: the server reuses it
            name = authorization.body.identifier.value
            http01 = [
                body
                for body in authorization.body.challenges
                if isinstance(body.chall, challenges.HTTP01)
            ]
            if not http01:
                raise AcmeFailed(f"{name}: the ACME server offers no HTTP-01 challenge.")
            _, answer = http01[0].response_and_validation(acme.net.key)
            found.append((name, http01[0].chall.encode("token"), str(answer), http01[0]))
        return _Order(order, key_pem, tuple(found))

    def _finish(self, order: _Order, names: tuple[str, ...]) -> Issued:
        acme = self._acme()
        for _, _, _, body in order.challenges:
            acme.answer_challenge(body, body.chall.response(acme.net.key))
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_TIMEOUT)
        done = acme.poll_and_finalize(order.resource, deadline)
        if not done.fullchain_pem:
            raise AcmeFailed("The ACME server finished the order without a certificate.")
        chain = done.fullchain_pem.encode()
        leaf = x509.load_pem_x509_certificate(chain)
        return Issued(
            chain,
            order.key_pem,
            names,
            leaf.not_valid_before_utc,
            leaf.not_valid_after_utc,
        )


def _reason(exc: BaseException, directory: str) -> str:
    """One line saying why an order failed, for ``acm_status_reason``."""
    import requests
    from acme import errors, messages

    if isinstance(exc, errors.ValidationError):
        parts = []
        for authorization in exc.failed_authzrs:
            name = authorization.body.identifier.value
            problems = [
                body.error.detail or str(body.error)
                for body in authorization.body.challenges
                if body.error is not None
            ]
            parts.append(f"{name}: {'; '.join(problems) or 'not validated'}")
        return "Validation failed: " + " | ".join(parts)
    if isinstance(exc, messages.Error):
        return f"The ACME server refused: {exc.detail or exc.typ}"
    if isinstance(exc, errors.TimeoutError):
        return f"The ACME server did not finish the order within {ORDER_TIMEOUT:.0f} s."
    if isinstance(exc, requests.exceptions.SSLError):
        return (
            f"Cannot verify the HTTPS certificate of the ACME directory {directory}: pass the "
            "CA that signed it with --acme-ca-bundle."
        )
    if isinstance(exc, requests.exceptions.RequestException):
        return f"Cannot reach the ACME directory {directory}: {type(exc).__name__}."
    return f"The ACME order failed: {exc}"

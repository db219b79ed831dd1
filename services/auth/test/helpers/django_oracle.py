"""Django itself as the test oracle for the SimpleJWT move (issue 15).

Run with Debian's /usr/bin/python3 (python3-django, -djangorestframework,
-djangorestframework-simplejwt, -bcrypt, -argon2). Every mode prints JSON.

  hashes PASSWORD            make_password with each of Django's hashers
  project DIR USERS_JSON     a throwaway Django project (SQLite) in DIR with
                             those users; prints the paths of manage.py
  simplejwt REQUESTS_JSON    the request list against DRF + SimpleJWT's own
                             views (rotation + blacklist); statuses and bodies
  jwtauth JWKS ISS AUD TOKENS_JSON
                             a DRF view behind SimpleJWT's JWTAuthentication,
                             configured by settings alone; one status per token
"""
import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys

import django
from django.conf import settings

HASHERS = [
    'django.contrib.auth.hashers.PBKDF2PasswordHasher',
    'django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher',
    'django.contrib.auth.hashers.Argon2PasswordHasher',
    'django.contrib.auth.hashers.BCryptSHA256PasswordHasher',
    'django.contrib.auth.hashers.BCryptPasswordHasher',
]


def scrypt_like_django(password, salt=None, n=2 ** 14, r=8, p=1):
    """Django 4.0+'s ScryptPasswordHasher.encode, line for line: Debian 12's Django 3.2 has no scrypt hasher."""
    salt = salt or secrets.token_urlsafe(16)[:22]
    digest = hashlib.scrypt(password.encode(), salt=salt.encode(), n=n, r=r, p=p, maxmem=0, dklen=64)
    return '%s$%d$%s$%d$%d$%s' % ('scrypt', n, salt, r, p, base64.b64encode(digest).decode('ascii').strip())


def configure(**extra):
    base = dict(
        SECRET_KEY='oracle-' + secrets.token_hex(16),
        INSTALLED_APPS=['django.contrib.contenttypes', 'django.contrib.auth'],
        DATABASES={'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': ':memory:'}},
        PASSWORD_HASHERS=HASHERS,
        USE_TZ=True,
        DEFAULT_AUTO_FIELD='django.db.models.AutoField',
    )
    base.update(extra)
    settings.configure(**base)
    django.setup()


def hashes(password):
    configure()
    from django.contrib.auth.hashers import Argon2PasswordHasher, make_password
    out = {name: make_password(password, hasher=name) for name in ['pbkdf2_sha256', 'pbkdf2_sha1', 'argon2', 'bcrypt_sha256', 'bcrypt']}
    # The argon2i encoding Django 1.10-3.1 wrote, which older databases still hold.
    import argon2
    hasher = Argon2PasswordHasher()
    raw = argon2.low_level.hash_secret(password.encode(), hasher.salt().encode(), time_cost=2, memory_cost=512, parallelism=2,
                                       hash_len=16, type=argon2.low_level.Type.I)
    out['argon2i'] = 'argon2' + raw.decode('ascii')
    assert hasher.verify(password, out['argon2i'])
    out['scrypt'] = scrypt_like_django(password)
    # $2y$, PHP's name for $2b$: users carried over from PHP into Django keep it, and Django verifies it.
    from django.contrib.auth.hashers import check_password
    for name in ['bcrypt', 'bcrypt_sha256']:
        out[name + '_2y'] = out[name].replace('$2b$', '$2y$', 1)
        assert check_password(password, out[name + '_2y'])
    return out


SETTINGS_PY = '''
SECRET_KEY = {secret!r}
INSTALLED_APPS = ['django.contrib.contenttypes', 'django.contrib.auth']
DATABASES = {{'default': {{'ENGINE': 'django.db.backends.sqlite3', 'NAME': {db!r}}}}}
PASSWORD_HASHERS = {hashers!r}
USE_TZ = True
DEFAULT_AUTO_FIELD = 'django.db.models.AutoField'
'''

MANAGE_PY = '''import os, sys
os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'oracle_settings')
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
'''

CREATE_USERS = '''
import json, sys
from django.contrib.auth.models import User
for spec in json.load(open(sys.argv[-1])):
    user = User(username=spec['username'], is_active=spec.get('is_active', True))
    if spec.get('hasher') == 'unusable':
        user.set_unusable_password()
    elif 'encoded' in spec:
        user.password = spec['encoded']
    else:
        from django.contrib.auth.hashers import make_password
        user.password = make_password(spec['password'], hasher=spec['hasher'])
    user.save()
'''


def project(directory, users_file):
    """A real Django project on disk: manage.py migrate, users saved through the ORM."""
    with open(os.path.join(directory, 'oracle_settings.py'), 'w') as f:
        f.write(SETTINGS_PY.format(secret=secrets.token_hex(16), db=os.path.join(directory, 'db.sqlite3'), hashers=HASHERS))
    with open(os.path.join(directory, 'manage.py'), 'w') as f:
        f.write(MANAGE_PY)
    with open(os.path.join(directory, 'create_users.py'), 'w') as f:
        f.write(CREATE_USERS)
    env = dict(os.environ, PYTHONPATH=directory)
    run = lambda *args: subprocess.run([sys.executable, 'manage.py', *args], cwd=directory, env=env, check=True, capture_output=True, text=True)
    run('migrate', '--no-input')
    subprocess.run([sys.executable, 'manage.py', 'shell', '-c', open(os.path.join(directory, 'create_users.py')).read() .replace('sys.argv[-1]', repr(users_file))],
                   cwd=directory, env=env, check=True, capture_output=True, text=True)
    return {'manage': os.path.join(directory, 'manage.py')}


def drf_settings(simple_jwt, apps=()):
    configure(
        INSTALLED_APPS=['django.contrib.contenttypes', 'django.contrib.auth', 'rest_framework', *apps],
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=['*'],
        MIDDLEWARE=['django.middleware.common.CommonMiddleware'],
        APPEND_SLASH=False,
        REST_FRAMEWORK={
            'DEFAULT_AUTHENTICATION_CLASSES': ['rest_framework_simplejwt.authentication.JWTAuthentication'],
            'DEFAULT_PERMISSION_CLASSES': ['rest_framework.permissions.IsAuthenticated'],
        },
        SIMPLE_JWT=simple_jwt,
    )
    from django.core.management import call_command
    call_command('migrate', verbosity=0)


urlpatterns = []


def simplejwt(requests_file):
    """The peer stack's SimpleJWT configuration (shared/peer-drf): RS256, rotation, blacklist after rotation;
    the spec's "rotate": false is SimpleJWT's own default instead (no rotation, no blacklist)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    spec = json.load(open(requests_file))
    rotate = spec.get('rotate', True)
    drf_settings({
        'ALGORITHM': 'RS256', 'SIGNING_KEY': private, 'VERIFYING_KEY': public,
        'ROTATE_REFRESH_TOKENS': rotate, 'BLACKLIST_AFTER_ROTATION': rotate,
    }, apps=['rest_framework_simplejwt.token_blacklist'])
    from django.urls import path
    from rest_framework_simplejwt.views import TokenBlacklistView, TokenObtainPairView, TokenRefreshView, TokenVerifyView
    urlpatterns[:] = [
        path('api/token/', TokenObtainPairView.as_view()),
        path('api/token/refresh/', TokenRefreshView.as_view()),
        path('api/token/verify/', TokenVerifyView.as_view()),
        path('api/token/blacklist/', TokenBlacklistView.as_view()),
    ]
    from django.contrib.auth.models import User
    from django.test import Client
    for user in spec['users']:
        User.objects.create_user(user['username'], password=user['password'])
    return run_requests(Client(), spec['requests'])


def body_value(value, saved):
    """A value saved from an earlier answer ({"$": "name"}), a file to upload ({"file", "content"}), or the value itself."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    if isinstance(value, dict) and '$' in value:
        return saved[value['$']]
    if isinstance(value, dict):
        return SimpleUploadedFile(value['file'], value['content'].encode())
    return value


def run_requests(client, requests):
    """A request is a JSON POST unless it names its encoding (form: urlencoded, multipart: Django's test
    client's own multipart body), a raw body and its Content-Type, or another method; with its headers, if any."""
    from urllib.parse import urlencode
    saved, results = {}, []
    for req in requests:
        body = {k: body_value(v, saved) for k, v in req.get('body', {}).items()}
        headers = {'HTTP_' + name.upper().replace('-', '_'): value for name, value in req.get('headers', {}).items()}
        if req.get('method', 'POST') != 'POST':
            res = client.generic(req['method'], req['path'], **headers)
        elif 'raw' in req:
            res = client.generic('POST', req['path'], req['raw']['body'].encode(), content_type=req['raw']['type'], **headers)
        elif req.get('encoding') == 'form':
            res = client.post(req['path'], urlencode(body, doseq=True), content_type='application/x-www-form-urlencoded', **headers)
        elif req.get('encoding') == 'multipart':
            res = client.post(req['path'], body, **headers)
        else:
            res = client.post(req['path'], json.dumps(body), content_type='application/json', **headers)
        answer = res.json() if res.content else {}
        for name, key in req.get('save', {}).items():
            saved[name] = answer.get(key)
        results.append({'status': res.status_code, 'body': answer, 'www_authenticate': res.get('WWW-Authenticate')})
    return results


def jwtauth(jwks_url, issuer, audience, tokens_file):
    """Only settings, docs/integrators.md's: SimpleJWT's JWTAuthentication reads Tessera's JWKS, audience, issuer,
    preferred_username, with a leeway for the hosts' clocks."""
    drf_settings({
        'ALGORITHM': 'RS256', 'JWK_URL': jwks_url, 'AUDIENCE': audience, 'ISSUER': issuer,
        'USER_ID_FIELD': 'username', 'USER_ID_CLAIM': 'preferred_username', 'LEEWAY': 30,
    })
    from django.contrib.auth.models import User
    from django.http import JsonResponse
    from django.test import Client
    from django.urls import path
    from rest_framework.views import APIView

    class Me(APIView):
        def get(self, request):
            return JsonResponse({'username': request.user.username})

    urlpatterns[:] = [path('me/', Me.as_view())]
    spec = json.load(open(tokens_file))
    for username in spec['users']:
        User.objects.create_user(username)
    client = Client()
    out = []
    for token in spec['tokens']:
        res = client.get('/me/', HTTP_AUTHORIZATION='Bearer ' + token)
        out.append({'status': res.status_code, 'body': res.json()})
    return out


if __name__ == '__main__':
    mode, args = sys.argv[1], sys.argv[2:]
    result = {'hashes': hashes, 'project': project, 'simplejwt': simplejwt, 'jwtauth': jwtauth}[mode](*args)
    json.dump(result, sys.stdout)

"""The UI's words in English and Russian (``language`` setting, switchable per browser)."""

LANG_COOKIE = "pulmogate_lang"
LANGUAGES = ("en", "ru")

WORDS: dict[str, dict[str, str]] = {
    "results": {"en": "Results", "ru": "Результаты"},
    "new_task": {"en": "New task", "ru": "Новая задача"},
    "rules": {"en": "Rules", "ru": "Правила"},
    "destinations": {"en": "Destinations", "ru": "Получатели"},
    "license": {"en": "License", "ru": "Лицензия"},
    "users": {"en": "Users", "ru": "Пользователи"},
    "tokens": {"en": "API tokens", "ru": "API-токены"},
    "status": {"en": "Status", "ru": "Состояние"},
    "sign_in": {"en": "Sign in", "ru": "Войти"},
    "sign_out": {"en": "Sign out", "ru": "Выйти"},
    "username": {"en": "Username", "ru": "Имя пользователя"},
    "password": {"en": "Password", "ru": "Пароль"},
    "id": {"en": "ID", "ru": "№"},
    "delete": {"en": "Delete", "ru": "Удалить"},
    "download": {"en": "Download", "ru": "Скачать"},
    "prediction": {"en": "Prediction", "ru": "Заключение"},
    "job_status": {"en": "Status", "ru": "Статус"},
    "processing_time": {"en": "processing", "ru": "обработка"},
    "total_time": {"en": "total", "ru": "всего"},
    "delivery": {"en": "Delivery", "ru": "Отправка"},
    "source": {"en": "Source", "ru": "Источник"},
    "log": {"en": "Log", "ru": "Журнал"},
    "source_study": {"en": "Source study", "ru": "Исходное исследование"},
    "all_statuses": {"en": "All statuses", "ru": "Все статусы"},
    "filter": {"en": "Filter", "ru": "Показать"},
    "search": {
        "en": "Patient, accession, UID, study date, source or description",
        "ru": "Пациент, номер исследования, UID, дата, источник или описание",
    },
    "received": {"en": "Received", "ru": "Получено"},
    "failure_notices": {
        "en": "Tell the destinations when an analysis is not performed",
        "ru": "Сообщать получателям, если анализ не выполнен",
    },
    "received_from": {"en": "from", "ru": "с"},
    "received_to": {"en": "to", "ru": "по"},
    "patient": {"en": "Patient", "ru": "Пациент"},
    "arriving": {"en": "Arriving", "ru": "Поступают"},
    "instances_so_far": {"en": "Images so far", "ru": "Изображений получено"},
    "arrival_receiving": {"en": "receiving", "ru": "поступает"},
    "arrival_complete": {"en": "waiting for routing", "ru": "ожидает маршрутизации"},
    "previous": {"en": "Previous", "ru": "Назад"},
    "next": {"en": "Next", "ru": "Вперёд"},
    "of": {"en": "of", "ru": "из"},
    "no_jobs": {"en": "No jobs yet.", "ru": "Задач пока нет."},
    "job": {"en": "Job", "ru": "Задача"},
    "timings": {"en": "Stage timings", "ru": "Время этапов"},
    "deliveries": {"en": "Deliveries", "ru": "Отправки"},
    "resend": {"en": "Resend", "ru": "Отправить снова"},
    "reanalyse": {"en": "Analyse again", "ru": "Проанализировать снова"},
    "previews": {"en": "Key images", "ru": "Ключевые изображения"},
    "reason": {"en": "Reason", "ru": "Причина"},
    "figures": {"en": "Figures", "ru": "Показатели"},
    "purged": {"en": "Files purged by retention", "ru": "Файлы удалены по сроку хранения"},
    "confirm_delete": {
        "en": "Delete this job with its files?",
        "ru": "Удалить задачу вместе с файлами?",
    },
    "upload_help": {
        "en": "A zip of a CT study or its DICOM files. Each CT series becomes a job; scouts, "
        "reports and other objects are skipped.",
        "ru": "Zip-архив КТ-исследования или его DICOM-файлы. Каждая КТ-серия станет задачей; "
        "топограммы, отчёты и другие объекты пропускаются.",
    },
    "skipped": {
        "en": "skipped (not a CT series to analyse)",
        "ru": "пропущено (не КТ-серия для анализа)",
    },
    "files": {"en": "Files", "ru": "Файлы"},
    "rule": {"en": "Rule", "ru": "Правило"},
    "match_rules": {"en": "(match rules as usual)", "ru": "(подобрать по правилам)"},
    "upload": {"en": "Upload", "ru": "Загрузить"},
    "uploaded": {"en": "Uploaded", "ru": "Загружено"},
    "name": {"en": "Name", "ru": "Название"},
    "enabled": {"en": "Enabled", "ru": "Включено"},
    "priority": {"en": "Priority", "ru": "Приоритет"},
    "source_ip": {"en": "Source IP or network", "ru": "IP или сеть источника"},
    "calling_ae": {"en": "Calling AE", "ru": "AE источника"},
    "study_filter": {"en": "Study description regex", "ru": "Regex описания исследования"},
    "series_filter": {"en": "Series description regex", "ru": "Regex описания серии"},
    "ttl_days": {"en": "Keep (days)", "ru": "Хранить (дней)"},
    "add": {"en": "Add", "ru": "Добавить"},
    "save": {"en": "Save", "ru": "Сохранить"},
    "enable": {"en": "Enable", "ru": "Включить"},
    "disable": {"en": "Disable", "ru": "Выключить"},
    "tester": {"en": "Rule tester", "ru": "Проверка правил"},
    "test": {"en": "Test", "ru": "Проверить"},
    "study_description": {"en": "Study description", "ru": "Описание исследования"},
    "series_description": {"en": "Series description", "ru": "Описание серии"},
    "matches": {"en": "matches", "ru": "подходит"},
    "why_not": {"en": "why not", "ru": "почему нет"},
    "host": {"en": "Host", "ru": "Хост"},
    "port": {"en": "Port", "ru": "Порт"},
    "ae_title": {"en": "AE title", "ru": "AE title"},
    "image_encoding": {"en": "Image encoding", "ru": "Сжатие изображений"},
    "echo": {"en": "C-ECHO", "ru": "C-ECHO"},
    "install": {"en": "Install", "ru": "Установить"},
    "license_key": {"en": "License key", "ru": "Лицензионный ключ"},
    "role": {"en": "Role", "ru": "Роль"},
    "active": {"en": "Active", "ru": "Активен"},
    "last_login": {"en": "Last sign-in", "ru": "Последний вход"},
    "created": {"en": "Created", "ru": "Создан"},
    "expires": {"en": "Expires", "ru": "Истекает"},
    "last_used": {"en": "Last used", "ru": "Использован"},
    "revoke": {"en": "Revoke", "ru": "Отозвать"},
    "revoked": {"en": "revoked", "ru": "отозван"},
    "new_token": {"en": "New token (shown once)", "ru": "Новый токен (показан один раз)"},
    "expires_in_days": {"en": "Expires in days", "ru": "Истекает через (дней)"},
    "services": {"en": "Services", "ru": "Сервисы"},
    "queues": {"en": "Queues", "ru": "Очереди"},
    "disk": {"en": "Disk", "ru": "Диск"},
    "up": {"en": "up", "ru": "работает"},
    "down": {"en": "down", "ru": "не отвечает"},
    "last_seen": {"en": "last seen", "ru": "последний сигнал"},
    "accept_from": {"en": "Accepts images from", "ru": "Принимает изображения от"},
    "jobs_by_status": {"en": "Jobs by status", "ru": "Задачи по статусам"},
    "not_accepting": {
        "en": "Not accepting new images",
        "ru": "Новые изображения не принимаются",
    },
    "no_services": {
        "en": "No service has reported yet.",
        "ru": "Ни один сервис ещё не сообщил о себе.",
    },
    "audit": {"en": "Audit log", "ru": "Журнал действий"},
}


NOTICES: dict[str, dict[str, str]] = {
    "login_form_expired": {
        "en": "The sign-in form expired or was sent from another site: sign in again.",
        "ru": "Форма входа устарела или отправлена с другого сайта: войдите снова.",
    },
    "resend_requested": {"en": "resend requested: {names}", "ru": "повторная отправка: {names}"},
    "reanalysis_requested": {
        "en": "analysis requested again ({instances} instances)",
        "ru": "повторный анализ запрошен ({instances} изображений)",
    },
    "job_deleted": {"en": "job {id} deleted", "ru": "задача {id} удалена"},
    "rule_added": {"en": "rule {name} added", "ru": "правило {name} добавлено"},
    "rule_saved": {"en": "rule {name} saved", "ru": "правило {name} сохранено"},
    "rule_enabled": {"en": "rule {id} enabled", "ru": "правило {id} включено"},
    "rule_disabled": {"en": "rule {id} disabled", "ru": "правило {id} выключено"},
    "rule_deleted": {"en": "rule {id} deleted", "ru": "правило {id} удалено"},
    "destination_added": {"en": "destination {name} added", "ru": "получатель {name} добавлен"},
    "destination_saved": {"en": "destination {name} saved", "ru": "получатель {name} сохранён"},
    "destination_deleted": {"en": "destination {id} deleted", "ru": "получатель {id} удалён"},
    "license_installed": {"en": "license installed", "ru": "лицензия установлена"},
    "user_added": {"en": "user {name} added", "ru": "пользователь {name} добавлен"},
    "user_activated": {"en": "user {id} activated", "ru": "пользователь {id} включён"},
    "user_deactivated": {"en": "user {id} deactivated", "ru": "пользователь {id} отключён"},
    "user_role": {"en": "user {id} is now {role}", "ru": "пользователь {id} теперь {role}"},
    "token_revoked": {"en": "token {id} revoked", "ru": "токен {id} отозван"},
}


def notice(key: str, language: str, **values: object) -> str:
    """A confirmation after a form, in ``language``, with ``values`` filled in."""
    entry = NOTICES[key]
    return (entry.get(language) or entry["en"]).format(**values)


def translate(key: str, language: str) -> str:
    """The word for ``key`` in ``language`` (the key itself when missing)."""
    entry = WORDS.get(key)
    if entry is None:
        return key
    return entry.get(language) or entry["en"]

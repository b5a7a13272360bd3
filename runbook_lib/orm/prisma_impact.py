"""Application Impact: what the changed fields do to the code that uses the generated Prisma Client.

From `prisma_models.updates(...)`, pure: for each changed field, the TypeScript type `prisma generate`
gives it before and after (Prisma's documented scalar mapping: String -> string, Int -> number,
BigInt -> bigint, Float -> number, Decimal -> Prisma.Decimal, Boolean -> boolean, DateTime -> Date,
Json -> Prisma.JsonValue, Bytes -> Buffer (Prisma 5) or Uint8Array (Prisma 6 and later), an enum -> the
enum's type; optional: `| null`; a list: `T[]`), what `create()` now needs, which relation becomes required,
and what a referential action change does to deletes, with the Prisma error codes an application sees
(P2003 foreign key constraint failed, P2011 null constraint violation, P2002 unique constraint failed).
A type Prisma cannot map, or that the snapshot cannot name, is said to be unknown, never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runbook_lib.orm.prisma_models import FieldChange, ModelUpdate, ModelUpdates, PrismaLine

TS_TYPES = {
    "String": "string",
    "Int": "number",
    "BigInt": "bigint",
    "Float": "number",
    "Decimal": "Prisma.Decimal",
    "Boolean": "boolean",
    "DateTime": "Date",
    "Json": "Prisma.JsonValue",
    "Bytes": "Buffer or Uint8Array by Prisma version (Buffer in Prisma 5, Uint8Array from Prisma 6)",
}
ERROR_CODES = {
    "P2002": "Unique constraint failed",
    "P2003": "Foreign key constraint failed",
    "P2011": "Null constraint violation",
}


@dataclass(frozen=True)
class Impact:
    model: str
    field: str
    kind: str  # type | create | null | json input | relation | onDelete | onUpdate | unique | unknown | added | removed
    before: str  # the generated TypeScript (or the behaviour) before; "" when not applicable
    after: str
    statement: str  # one or two sentences, Markdown with code spans
    error_code: str | None = None


def ts_type(line: PrismaLine) -> str | None:
    """The field's TypeScript type in the model type `prisma generate` writes, or None when unknown."""
    if line.scalar is None:
        return None
    base = line.scalar if line.enum else TS_TYPES.get(line.scalar)
    if base is None:
        return None
    if line.scalar == "Bytes":
        base = "Buffer | Uint8Array"  # by version: see TS_TYPES
    text = f"{base}[]" if line.list else base
    if line.scalar == "Bytes" and line.list:
        text = "(Buffer | Uint8Array)[]"
    return f"{text} | null" if line.optional and not line.list else text


def _lower(model: str) -> str:
    return model[:1].lower() + model[1:]


def _declaration(line: PrismaLine | None) -> str:
    if line is None:
        return "(absent)"
    found = ts_type(line)
    return f"{line.name}: {found}" if found is not None else f"{line.name}: unknown"


def _scalar_impacts(update: ModelUpdate, change: FieldChange, relations: dict[str, PrismaLine]) -> list[Impact]:
    before, after = change.before, change.after
    model, name = update.model, change.name
    impacts = []
    line = after or before
    assert line is not None  # a change has a line before or after it
    if line.scalar is None:
        impacts.append(
            Impact(
                model,
                name,
                "unknown",
                "",
                "",
                f"`{model}.{name}`: column type `{line.pg_type}` has no Prisma scalar this report knows "
                f"(an `Unsupported` type, or a user-defined type schema.prisma does not declare as an enum): "
                f"its TypeScript type is unknown, not guessed.",
            )
        )
        return impacts
    if before is None:
        statement = f"`{model}.{name}` is new: the model type gains `{_declaration(after)}`."
        impacts.append(Impact(model, name, "added", "", _declaration(after), statement))
    elif after is None:
        statement = (
            f"`{model}.{name}` is gone: the model type loses `{_declaration(before)}`; code that reads or "
            f"writes it no longer compiles after `prisma generate`."
        )
        impacts.append(Impact(model, name, "removed", _declaration(before), "", statement))
    elif _declaration(before) != _declaration(after):
        statement = f"The generated type `{model}` changes `{_declaration(before)}` to `{_declaration(after)}`"
        if before.optional and not after.optional:
            statement += f"; code reading `{name}` no longer needs a null check."
        elif after.optional and not before.optional:
            statement += f"; code reading `{name}` must handle `null` (TypeScript says so under `strictNullChecks`)."
        else:
            statement += "."
        impacts.append(Impact(model, name, "type", _declaration(before), _declaration(after), statement))
    if after is not None and after.needs_value and (before is None or not before.needs_value):
        relation = relations.get(after.column or "")
        via = ""
        if relation is not None:
            r = relation.relation_info
            via = (
                f", or `{relation.name}: {{ connect: {{ {', '.join(f'{ref}: ...' for ref in r.references)} }} }}` "
                f"(`{model}CreateInput`)"
            )
        statement = (
            f"`prisma.{_lower(model)}.create()` now needs `{name}` (`{model}UncheckedCreateInput`){via}: "
            f"without it TypeScript reports \"Property '{name}' is missing in type\"; a NULL that reaches "
            f'the database is refused (`null value in column "{after.column}" violates not-null '
            f"constraint`), which Prisma Client reports as P2011 ({ERROR_CODES['P2011']})."
        )
        impacts.append(
            Impact(model, name, "create", "optional in create()", "required in create()", statement, "P2011")
        )
    if after is not None and before is not None and not after.optional and before.optional and not after.list:
        statement = (
            f"`prisma.{_lower(model)}.update()` can no longer set `{name}: null` (a TypeScript error); "
            f"a NULL that reaches the database fails with P2011 ({ERROR_CODES['P2011']})."
        )
        impacts.append(
            Impact(model, name, "null", f"{name}: null allowed", f"{name}: null refused", statement, "P2011")
        )
    if after is not None and after.scalar == "Json" and before is not None and before.optional != after.optional:
        impacts.append(
            Impact(
                model,
                name,
                "json input",
                "",
                "",
                f"`{name}` is Json: in create and update inputs an optional Json takes "
                f"`Prisma.JsonNull` or `Prisma.DbNull` for null; a required one takes "
                f"`Prisma.InputJsonValue` only.",
            )
        )
    unique_before = before is not None and re.search(r"(?<!@)@unique\b", before.attributes)
    unique_after = after is not None and re.search(r"(?<!@)@unique\b", after.attributes)
    if unique_after and not unique_before:
        impacts.append(
            Impact(
                model,
                name,
                "unique",
                "",
                "@unique",
                f"`{model}.{name}` is now unique: a create or update that repeats a value fails with "
                f"P2002 ({ERROR_CODES['P2002']}); `findUnique({{ where: {{ {name}: ... }} }})` becomes "
                f"available.",
                "P2002",
            )
        )
    elif unique_before and not unique_after:
        impacts.append(
            Impact(
                model,
                name,
                "unique",
                "@unique",
                "",
                f"`{model}.{name}` is no longer unique: `findUnique` and `upsert` by `{name}` no longer "
                f"compile; use `findFirst`.",
            )
        )
    return impacts


_DELETE = {
    "Restrict": "fails with P2003 (Foreign key constraint failed)",
    "NoAction": "fails with P2003 (Foreign key constraint failed), checked at the end of the statement",
    "Cascade": "deletes those {child} rows too",
    "SetNull": "sets their `{field}` to NULL",
    "SetDefault": "sets their `{field}` to its default",
}


_INSTEAD = {
    "Restrict": "failing",
    "NoAction": "failing",
    "Cascade": "deleting those {child} rows too",
    "SetNull": "setting their `{field}` to NULL",
    "SetDefault": "setting their `{field}` to its default",
}


def _relation_impacts(update: ModelUpdate, change: FieldChange) -> list[Impact]:
    before, after = change.before, change.after
    model = update.model
    impacts = []
    if after is None or before is None:
        line = after or before
        assert line is not None  # a change has a line before or after it
        verb = "added" if after is not None else "removed"
        impacts.append(
            Impact(
                model,
                line.name,
                verb,
                "",
                "",
                f"The relation `{model}.{line.name}` to `{line.relation_info.target_model}` is {verb}.",
            )
        )
        if after is None:
            return impacts
    r = after.relation_info
    fields = ", ".join(r.fields)
    if before is not None and before.optional and not after.optional:
        impacts.append(
            Impact(
                model,
                after.name,
                "relation",
                f"{after.name}?: {r.target_model} | null",
                f"{after.name}: {r.target_model}",
                f"The relation `{model}.{after.name}` becomes required: `include: {{ {after.name}: true }}` "
                f"returns `{r.target_model}` instead of `{r.target_model} | null`, and "
                f"`{after.name}: {{ disconnect: true }}` no longer compiles.",
            )
        )
    elif before is not None and after.optional and not before.optional:
        impacts.append(
            Impact(
                model,
                after.name,
                "relation",
                f"{after.name}: {r.target_model}",
                f"{after.name}?: {r.target_model} | null",
                f"The relation `{model}.{after.name}` becomes optional: `include` returns "
                f"`{r.target_model} | null`; code must handle a `{model}` without one.",
            )
        )
    old_delete = before.relation_info.on_delete if before is not None else None
    if old_delete != r.on_delete:
        then = _DELETE.get(r.on_delete, r.on_delete).format(child=model, field=fields)
        was = _INSTEAD.get(old_delete, str(old_delete)).format(child=model, field=fields) if old_delete else ""
        code = "P2003" if r.on_delete in ("Restrict", "NoAction") else None
        statement = (
            f"onDelete {old_delete + ' -> ' if old_delete else ''}{r.on_delete}: deleting a `{r.target_model}` "
            f"that still has `{model}` rows now {then}" + (f", instead of {was}" if was else "") + "."
        )
        if code:
            statement += (
                f" Code that deletes a `{r.target_model}` must first delete or reassign its `{model}` rows "
                f"(or catch P2003 on `prisma.{_lower(r.target_model)}.delete()`)."
            )
        impacts.append(
            Impact(
                model,
                after.name,
                "onDelete",
                f"onDelete: {old_delete}" if old_delete else "",
                f"onDelete: {r.on_delete}",
                statement,
                code,
            )
        )
    old_update = before.relation_info.on_update if before is not None else None
    if before is not None and old_update != r.on_update:
        statement = (
            f"onUpdate {old_update} -> {r.on_update}: changing the key `{', '.join(r.references)}` of a "
            f"`{r.target_model}` that `{model}` rows reference now "
            + (
                "updates their `" + fields + "` too"
                if r.on_update == "Cascade"
                else "sets their `" + fields + "` to NULL"
                if r.on_update == "SetNull"
                else "fails with P2003 (Foreign key constraint failed)"
            )
            + "."
        )
        impacts.append(
            Impact(
                model,
                after.name,
                "onUpdate",
                f"onUpdate: {old_update}",
                f"onUpdate: {r.on_update}",
                statement,
                "P2003" if r.on_update in ("Restrict", "NoAction") else None,
            )
        )
    return impacts


def impact(result: ModelUpdates) -> list[Impact]:
    """What each changed field does to the application, model by model, in the order of the changes."""
    found: list[Impact] = []
    for update in result.models:
        relations = {}
        for line in update.after:
            if line.kind == "relation":
                for column in line.relation_info.columns:
                    relations[column] = line
        for change in update.changes:
            changed = change.after or change.before
            assert changed is not None  # a change has a line before or after it
            if changed.kind == "scalar":
                found.extend(_scalar_impacts(update, change, relations))
            elif changed.kind == "relation":
                found.extend(_relation_impacts(update, change))
    return found


def impact_markdown(impacts: list[Impact]) -> str:
    """Per model: the generated type's changed declarations Before and After (```typescript), then each
    consequence as a bullet, with the Prisma error code an application would catch."""
    if not impacts:
        return "No change to the generated Prisma Client: no field's type, optionality, uniqueness or relation changed."
    parts = ["After `npx prisma generate`:"]
    for model in dict.fromkeys(i.model for i in impacts):
        mine = [i for i in impacts if i.model == model]
        parts.append(f"### {model}")
        typed = [i for i in mine if i.kind in ("type", "added", "removed") and (i.before or i.after)]
        if typed:
            before = "\n".join(f"  {i.before};" for i in typed if i.before)
            after = "\n".join(f"  {i.after};" for i in typed if i.after)
            parts.append(
                "```typescript\n"
                f"// before\ntype {model} = {{\n{before or '  // (absent)'}\n}}\n"
                f"// after\ntype {model} = {{\n{after or '  // (absent)'}\n}}\n```"
            )
        parts.append("\n".join(f"- {i.statement}" for i in mine))
    return "\n\n".join(parts)

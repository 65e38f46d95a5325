// HMS-OMS My work: a human step's form, generated from its JSON Schema. No framework, no build step.
// string → text, format date → date, number/integer → number, boolean → checkbox, enum → select; an object or an
// array field (rare in a form) → JSON in a text area. Required fields are marked; the server checks the result (the
// form is novalidate), and its 422 ``fields`` are shown next to each field. Everything is set as text, never markup.
"use strict";

window.OMS.form = (function () {
  const { el } = window.OMS;

  function typeOf(schema) {
    const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
    if (type) return type;
    if (Array.isArray(schema.enum)) return "enum";
    return "string";
  }

  // One field: its control, and how to read its value (``undefined``: left empty, so not sent).
  function control(name, schema, id, disabled) {
    const type = typeOf(schema);
    const common = { id: id, name: name, disabled: disabled, "aria-describedby": id + "-error" };
    if (Array.isArray(schema.enum)) {
      const select = el("select", common, el("option", { value: "" }, "—"),
        schema.enum.map((value, index) => el("option", { value: String(index) },
          typeof value === "string" ? value : JSON.stringify(value))));
      return { node: select, read: () => (select.value === "" ? undefined : schema.enum[Number(select.value)]) };
    }
    if (type === "boolean") {
      const box = el("input", Object.assign({ type: "checkbox" }, common));
      if (schema.default === true) box.checked = true;
      return { node: box, read: () => box.checked };
    }
    if (type === "number" || type === "integer") {
      const input = el("input", Object.assign({ type: "number", step: type === "integer" ? "1" : "any",
        min: schema.minimum, max: schema.maximum }, common));
      return { node: input, read: () => {
        if (input.value === "") return input.validity.badInput ? NaN : undefined;
        return Number(input.value);
      } };
    }
    if (type === "object" || type === "array") {
      const area = el("textarea", Object.assign({ rows: 3, placeholder: "JSON" }, common));
      return { node: area, read: () => {
        if (area.value.trim() === "") return undefined;
        try { return JSON.parse(area.value); } catch (error) { return new SyntaxError("not JSON: " + error.message); }
      } };
    }
    const kind = schema.format === "date" ? "date" : schema.format === "email" ? "email" : "text";
    const input = el("input", Object.assign({ type: kind, maxlength: schema.maxLength }, common));
    return { node: input, read: () => (input.value === "" ? undefined : input.value) };
  }

  // The read-only view of a JSON value: an object as a list of its keys and values; anything else as JSON text.
  function show(value) {
    if (value === null || value === undefined) return el("p", { class: "hint" }, "none");
    if (typeof value === "object" && !Array.isArray(value)) {
      const keys = Object.keys(value);
      if (!keys.length) return el("p", { class: "hint" }, "none");
      return el("dl", { class: "json" }, keys.flatMap((key) => [el("dt", null, key),
        el("dd", null, typeof value[key] === "string" ? value[key] : JSON.stringify(value[key], null, 1))]));
    }
    return el("pre", null, JSON.stringify(value, null, 2));
  }

  // The order of the fields: as the schema's ``properties`` lists them (definitions keep their author's key order).
  function fieldOrder(schema) {
    return Object.keys(schema.properties);
  }

  // Fill ``form`` from ``schema`` (``null``: any JSON object, typed as JSON). ``disabled``: read-only (not hers).
  // Returns { read(): the result or an error per field, showErrors(fields): the messages next to their fields }.
  function build(form, schema, disabled) {
    const fields = {};
    const errors = {};
    const nodes = [];
    if (!schema || !schema.properties) {
      const area = el("textarea", { id: "field-result", name: "result", rows: 8, disabled: disabled,
        placeholder: "{ }", "aria-describedby": "field-result-error" });
      fields["(the result)"] = { read: () => {
        try { return JSON.parse(area.value.trim() || "{}"); } catch (error) { return new SyntaxError(error.message); }
      } };
      errors["(the result)"] = el("p", { class: "field-error", id: "field-result-error", role: "alert" });
      nodes.push(el("div", { class: "field", dataset: { field: "(the result)" } },
        el("label", { for: "field-result" }, "result (a JSON object)"), area, errors["(the result)"]));
    } else {
      const required = new Set(Array.isArray(schema.required) ? schema.required : []);
      fieldOrder(schema).forEach((name, index) => {
        const property = schema.properties[name];
        const sub = property && typeof property === "object" ? property : {};
        const id = "field-" + index;
        const made = control(name, sub, id, disabled);
        if (required.has(name)) made.node.setAttribute("aria-required", "true");
        fields[name] = made;
        errors[name] = el("p", { class: "field-error", id: id + "-error", role: "alert" });
        const label = el("label", { for: id }, sub.title || name,
          required.has(name) ? el("span", { class: "required", title: "required" }, " *") : null);
        nodes.push(el("div", { class: "field field-" + typeOf(sub), dataset: { field: name } },
          label, made.node, errors[name], sub.description ? el("p", { class: "hint" }, sub.description) : null));
      });
      if (required.size) nodes.push(el("p", { class: "hint" }, "* required"));
    }
    form.replaceChildren(...nodes);

    function showErrors(messages) {
      const left = {};
      for (const [name, box] of Object.entries(errors)) {
        box.textContent = "";
        box.parentNode.classList.remove("invalid");
        const input = box.parentNode.querySelector("input, select, textarea");
        if (input) input.removeAttribute("aria-invalid");
      }
      for (const [path, message] of Object.entries(messages || {})) {
        const name = Object.prototype.hasOwnProperty.call(errors, path) ? path : path.split(".")[0];
        const box = Object.prototype.hasOwnProperty.call(errors, name) ? errors[name] : null;
        if (!box) { left[path] = message; continue; }
        box.textContent = box.textContent ? box.textContent + "; " + message : message;
        box.parentNode.classList.add("invalid");
        const input = box.parentNode.querySelector("input, select, textarea");
        if (input) input.setAttribute("aria-invalid", "true");
      }
      return left; // the messages no field of this form is named by
    }

    // The result to send, or ``{problems}``: what this browser can tell is wrong before asking (a number that is
    // not one, JSON that does not parse). The rest (required, formats, ranges) is the server's to say.
    function read() {
      const result = {};
      const problems = {};
      for (const [name, field] of Object.entries(fields)) {
        const value = field.read();
        if (value instanceof Error) problems[name] = value.message;
        else if (typeof value === "number" && Number.isNaN(value)) problems[name] = "not a number";
        else if (value !== undefined) result[name] = value;
      }
      if (Object.keys(problems).length) return { problems: problems };
      if (Object.prototype.hasOwnProperty.call(result, "(the result)")) return { result: result["(the result)"] };
      return { result: result };
    }

    return { read: read, showErrors: showErrors };
  }

  return { build: build, show: show };
})();

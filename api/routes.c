/* api/routes.c: the API's route table: every endpoint is one row, naming the methods it
 * serves and its handler; the HTTP layer answers 404 and 405 (with Allow) from it. */
#include "api/api.h"

const struct http_route api_routes[] = {
    {"/healthz", HTTP_M(HTTP_VERB_GET) | HTTP_M(HTTP_VERB_HEAD), api_health_get},
    {"/readyz", HTTP_M(HTTP_VERB_GET) | HTTP_M(HTTP_VERB_HEAD), api_ready_get},
    {"/metrics", HTTP_M(HTTP_VERB_GET) | HTTP_M(HTTP_VERB_HEAD), api_metrics_get},
    {"/openapi.yaml", HTTP_M(HTTP_VERB_GET) | HTTP_M(HTTP_VERB_HEAD), api_openapi_get},
    {"/v1/audit", HTTP_M(HTTP_VERB_GET), api_audit_list},
    {"/v1/audit/{exec_id}", HTTP_M(HTTP_VERB_GET), api_audit_get},
    {"/v1/workspaces/{id}/exec", HTTP_M(HTTP_VERB_POST), api_exec_post},
    {"/v1/workspaces/{id}/execs", HTTP_M(HTTP_VERB_GET), api_execs_list},
    {"/v1/execs/{exec_id}", HTTP_M(HTTP_VERB_GET) | HTTP_M(HTTP_VERB_DELETE), api_execs_one},
    {"/v1/execs/{exec_id}/output", HTTP_M(HTTP_VERB_GET), api_execs_output},
    {"/v1/execs/{exec_id}/signal", HTTP_M(HTTP_VERB_POST), api_execs_signal},
    {"/v1/batches", HTTP_M(HTTP_VERB_POST) | HTTP_M(HTTP_VERB_GET), api_batches_root},
    {"/v1/batches/{batch_id}", HTTP_M(HTTP_VERB_GET), api_batches_one},
};

const size_t api_nroutes = sizeof(api_routes) / sizeof(api_routes[0]);
